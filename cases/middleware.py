from django.http import JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from .audit import _actor, _ip, client_ip
from .validation import UploadTooLarge, upload_request_check


class AuditContextMiddleware:
    """Make the signed-in user and client IP available to the audit trail."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        ip_token = _ip.set(client_ip(request))
        user = getattr(request, "user", None)
        actor_token = _actor.set(user if user is not None and user.is_authenticated else None)
        try:
            return self.get_response(request)
        finally:
            _actor.reset(actor_token)
            _ip.reset(ip_token)


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
