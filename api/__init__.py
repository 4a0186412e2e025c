"""REST API of HematoVision, under /api/v1/ (DRF; OpenAPI at schema/, Swagger UI at docs/).

auth/token/ (POST username+password → token; django-axes lockout, rate limited) ·
patients/ (GET list + ?search=, POST register) · patients/<id>/ ·
samples/ (GET list + ?status=&priority=&patient=&received_after=&received_before=…, POST register) ·
samples/<id>/ · samples/<id>/images/ (GET images with latest prediction, POST multipart upload) ·
images/<id>/file/ · predictions/<id>/heatmap/ (streamed files) ·
model-versions/ (GET) · model-versions/<id>/activate/ (POST, admin) · audit/ (GET, admin, filterable).

Token or session authentication (session writes need the CSRF token); one permission class per
role (api.permissions); writes only through cases.services / classifier.services; errors mapped
by api.exceptions. tests/api/test_api_access_matrix.py lists who may call what.
"""
