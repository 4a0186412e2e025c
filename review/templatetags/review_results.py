"""``{% signed_result signature %}`` and ``{% latest_signed_result sample %}``: a signed differential with
its flags, reference ranges, counts and (on an amendment) the previous values. Shown by the sample page
(a ``cases`` template, which names this library rather than importing review code) and the signed
version page."""
from django import template

from review import selectors as rs

register = template.Library()


@register.inclusion_tag("review/_signed_result.html")
def signed_result(signature):
    return {"result": rs.signed_result(signature=signature)}


@register.inclusion_tag("review/_signed_result.html")
def latest_signed_result(sample):
    signature = rs.signature(sample=sample)
    return {"result": rs.signed_result(signature=signature) if signature else None}
