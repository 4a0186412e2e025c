"""REST API of HematoVision, under /api/v1/ (DRF; OpenAPI at schema/, Swagger UI at docs/).

auth/token/ (POST username+password → token; django-axes lockout, rate limited) ·
patients/ (GET list + ?search=, POST register) · patients/<id>/ ·
samples/ (GET list + ?status=&priority=&patient=&received_after=&received_before=…, POST register) ·
samples/<id>/ · samples/<id>/images/ (GET images with latest prediction, POST multipart upload) ·
images/<id>/file/ · predictions/<id>/heatmap/ (streamed files) ·
model-versions/ (GET) · model-versions/<id>/activate/ (POST, admin) · audit/ (GET, admin, filterable).

Doctor review (api.review_views, review.services; the review page's keys call these too):
worklist/ (GET, doctor; ?status=&received_from=&received_to=) ·
samples/<id>/review/ (GET cells, differential, sign-off blockers; doctor) ·
samples/<id>/images/<image_id>/review/ (POST final_class, comment) · samples/<id>/review/confirm-group/ (POST) ·
samples/<id>/comment/ (PUT) · samples/<id>/sign/ (POST password, meaning → 201; 400 wrong password, 409 blocked;
rate limited) · samples/<id>/amend/ (POST reason → 201) — all doctor only, 409 when the sample's state refuses ·
samples/<id>/signatures/ · samples/<id>/report.pdf?version= · samples/<id>/fhir/ (clinical staff; audited
downloads, 404 until signed) · agreement/ (GET, doctor and admin).

Whole fields (api.field_views): a field is uploaded through samples/<id>/images/ (kind=field or auto) ·
samples/<id>/fields/ · fields/<id>/ (detections) · fields/<id>/file/ (clinical staff) ·
fields/<id>/cells/ (POST box: add a missed cell) · fields/<id>/cells/<image_id>/reject/ (POST reject,
DELETE withdraw) — doctor only · agreement/detection/ (GET, doctor and admin).

Token or session authentication (session writes need the CSRF token); one permission class per
role (api.permissions); writes only through the apps' services; errors mapped once, by
api.exceptions. tests/api/test_api_access_matrix.py lists who may call what.
"""
