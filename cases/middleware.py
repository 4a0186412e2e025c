from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from .errors import InvalidState, NotAllowed
from .validation import UploadTooLarge, upload_request_check


class UploadRequestLimitMiddleware:
    """Answer 413 to a request body over ``HV_MAX_UPLOAD_REQUEST_BYTES`` before anything parses it.

    It must run before the CSRF check, which reads a form's body: the rule is
    ``cases.validation.upload_request_check``. Pages get a page naming the limit, the API JSON.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            content_length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            content_length = 0  # Django reads no body from such a request either
        try:
            upload_request_check(content_length=content_length)
        except UploadTooLarge as exc:
            _discard_body(request)
            if request.path.startswith("/api/"):
                return JsonResponse({"detail": str(exc)}, status=413)
            back = request.META.get("HTTP_REFERER", "")
            if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
                back = ""
            return render(request, "cases/upload_too_large.html", {"detail": str(exc), "back": back}, status=413)
        return self.get_response(request)


def _discard_body(request) -> None:
    """Read the refused body in small chunks and drop it, so that the client, which sends it all
    before it reads an answer, gets the 413 (and runserver does not buffer the rest in memory)."""
    try:
        while request.read(1024 * 1024):
            pass
    except OSError:
        pass  # the client went away


class ServiceErrorMiddleware:
    """The pages' side of ``cases.errors``: a refusal no view answered itself becomes the page for
    its status (``NotAllowed`` 403, ``InvalidState`` 409), never a 500. The API maps the same
    errors in ``api.exceptions``; views that show a refusal next to their form catch it first."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and not request.path.startswith("/api/")
            and not getattr(response, "hv_page", False)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            # With DEBUG on, an address no URL matches gets Django's technical page, which lists the
            # URL conf: never shown; the site's own page instead.
            return _not_found_page(request)
        return response

    def process_exception(self, request, exception):
        if request.path.startswith("/api/"):
            return None  # DRF's handler answered already; anything left is a 500 there
        if isinstance(exception, Http404):
            return _not_found_page(request)
        if isinstance(exception, NotAllowed):
            return render(request, "403.html", {"detail": str(exception)}, status=403)
        if isinstance(exception, InvalidState):
            return render(request, "409.html", {"detail": str(exception)}, status=409)
        return None


def _not_found_page(request):
    response = render(request, "404.html", status=404)
    response.hv_page = True
    return response
