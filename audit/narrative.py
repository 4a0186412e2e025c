"""The audit trail told in words a doctor reads: "Dr Ada Lovelace reclassified cell 7 from
Neutrophil to Monocyte".

The one place for the wording. Each sentence is made from what the event stored (its action,
object type, before and after values, reason) and from the creation events of the records it
names (a review's cell, a cell's sample, a sample's accession number), so the trail tells its
story without reading other apps' tables. One function per kind of event (``DESCRIBERS``); an
event nobody wrote a sentence for gets a generic one, and a sentence that fails falls back to
the generic one: narrating never raises.
"""
from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from accounts.roles import Role, user_roles

from .models import AuditEvent

logger = logging.getLogger(__name__)

SYSTEM = "HematoVision"
EXCLUDED = "EXCLUDED"  # the reviewer's "not counted" verdict (cases.cell_classes), stored as this word
# Bookkeeping that a reader does not need to hear about when a record changes.
QUIET_FIELDS = {"status_changed_at", "updated_at", "attempts", "seq", "prev_hash", "hash", "reviewed_at"}


@dataclass
class Entry:
    """One line of a story: a sentence, and the events it tells (several when grouped)."""

    when: datetime.datetime
    who: str
    text: str
    reason: str
    events: list[AuditEvent] = field(default_factory=list)
    group: tuple | None = None
    size: int = 1  # how many alike events the sentence tells (quiet steps not counted)

    @property
    def event(self) -> AuditEvent:
        return self.events[0]


@dataclass
class Line:
    """What a describer returns: the sentence, and optionally how to tell a run of alike events
    (``group`` is the key of the run, ``group_text`` the sentence with ``{n}`` for its length)."""

    text: str
    group: tuple | None = None
    group_text: str = ""
    quiet: bool = False  # a step of the line before it (a cell's status while it is classified)


# Looking up the records an event names ---------------------------------------------------


class Context:
    """What the sentences of some events need to know, read from the trail in a few queries."""

    def __init__(self, events: list[AuditEvent], *, sample_id=None):
        self.home = None if sample_id is None else str(sample_id)
        self.users = _users({e.actor_id for e in events if e.actor_id})
        self.created: dict[tuple[str, str], dict] = {}
        self.reprs: dict[tuple[str, str], str] = {}
        for e in events:
            if e.action == "create":
                self._remember(e.object_type, e.object_id, e.new_values, e.object_repr)
        self._load({(e.object_type, e.object_id) for e in events if e.object_id})
        # The records those point at: the cells of reviews and predictions, then their samples and fields.
        self._load(self._pointed("image_id", "cases.cellimage"))
        self._load(
            self._pointed("field_id", "cases.field") | self._pointed("model_version_id", "classifier.modelversion")
        )
        self._load(self._pointed("sample_id", "cases.sample"))

    def _remember(self, object_type: str, object_id: str, values: dict, object_repr: str) -> None:
        self.created.setdefault((object_type, object_id), values or {})
        self.reprs.setdefault((object_type, object_id), object_repr)

    def _pointed(self, key: str, object_type: str) -> set[tuple[str, str]]:
        return {
            (object_type, str(values[key])) for values in list(self.created.values())
            if isinstance(values, dict) and values.get(key) is not None
        }

    def _load(self, keys: set[tuple[str, str]]) -> None:
        keys = {k for k in keys if k not in self.created}
        if not keys:
            return
        by_type: dict[str, set[str]] = {}
        for object_type, object_id in keys:
            by_type.setdefault(object_type, set()).add(object_id)
        match = Q(pk__in=[])
        for object_type, ids in by_type.items():
            match |= Q(object_type=object_type, object_id__in=sorted(ids))
        for e in AuditEvent.objects.filter(match, action="create").order_by("pk"):
            self._remember(e.object_type, e.object_id, e.new_values, e.object_repr)

    def values(self, object_type: str, object_id) -> dict:
        values = self.created.get((object_type, str(object_id)))
        return values if isinstance(values, dict) else {}

    def accession(self, sample_id) -> str:
        if sample_id in (None, ""):
            return "an unknown sample"
        number = self.values("cases.sample", sample_id).get("accession_number") or self.reprs.get(
            ("cases.sample", str(sample_id))
        )
        return f"sample {number}" if number else f"sample #{sample_id}"

    def of(self, accession: str) -> str:
        """ " of sample HV-…" after a cell or field, or nothing on the page of that very sample."""
        if self.home is not None and accession == self.accession(self.home):
            return ""
        return f" of {accession}"

    def sample_of_cell(self, image_id) -> str:
        return self.accession(self.values("cases.cellimage", image_id).get("sample_id"))

    def model_name(self, version_id) -> str:
        values = self.values("classifier.modelversion", version_id)
        return values.get("name") or f"model #{version_id}"

    def person(self, event: AuditEvent) -> str:
        user = self.users.get(event.actor_id)
        if user is None:
            return SYSTEM if event.actor_username in ("", "system") else event.actor_username
        return person_name(user)


def _users(ids: set[int]) -> dict:
    if not ids:
        return {}
    return {u.pk: u for u in get_user_model().objects.filter(pk__in=ids).prefetch_related("groups")}


def person_name(user) -> str:
    """How the trail names a person: "Dr Ada Lovelace", "Tech Bob Baker", or the name alone."""
    name = user.get_full_name() or user.username
    roles = {g.name for g in user.groups.all()} if user.pk else user_roles(user)
    if Role.DOCTOR.value in roles:
        return f"Dr {name}"
    if Role.TECHNICIAN.value in roles:
        return f"Tech {name}"
    return name


# Values in words ---------------------------------------------------------------------------


def _model_field(object_type: str, attname: str):
    try:
        model = apps.get_model(object_type)
    except (LookupError, ValueError):
        return None
    for f in model._meta.concrete_fields:
        if f.attname == attname:
            return f
    return None


def field_label(object_type: str, attname: str) -> str:
    f = _model_field(object_type, attname)
    if f is not None:
        return str(f.verbose_name)
    return attname.removesuffix("_id").replace("_", " ")


def value_label(object_type: str, attname: str, value) -> str:
    """A stored value as a reader knows it: a choice's label, a class in words, a date and time."""
    if value is None or value == "":
        return "(empty)"
    f = _model_field(object_type, attname)
    if f is not None and f.choices:
        label = dict(f.flatchoices).get(value)
        if label is not None:
            return str(label)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        if attname.endswith("_class"):
            return class_label(value)
        if len(value) >= 16 and value[4:5] == "-" and "T" in value:
            when = parse_datetime(value)
            if when is not None:
                if timezone.is_aware(when):
                    when = timezone.localtime(when)
                return f"{when:%Y-%m-%d %H:%M}"
        return _quote(value) if " " in value or len(value) > 40 else value
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def class_label(value: str) -> str:
    if not value:
        return "no class"
    if value == EXCLUDED:
        return "excluded"
    return value.replace("_", " ").capitalize()


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return f"“{text[: limit - 1]}…”" if len(text) > limit else f"“{text}”"


def changes(event: AuditEvent, *, skip: Iterable[str] = ()) -> str:
    """ "WBC count from 3.00 to 4.50; requesting ward from (empty) to ICU" """
    old, new = event.old_values or {}, event.new_values or {}
    parts = []
    for key in new:
        if key in QUIET_FIELDS or key in skip:
            continue
        parts.append(
            f"{field_label(event.object_type, key)} from {value_label(event.object_type, key, old.get(key))} "
            f"to {value_label(event.object_type, key, new.get(key))}"
        )
    return "; ".join(parts)


def _changed(event: AuditEvent, key: str) -> bool:
    return key in (event.new_values or {})


# One function per kind of event -------------------------------------------------------------

Describer = Callable[[AuditEvent, Context, str], Line | str]


def _patient_create(e, ctx, who):
    v = e.new_values
    name = f"{v.get('family_name', '').upper()}, {v.get('given_name', '')}"
    return f"{who} registered patient {name} (MRN {v.get('mrn')})"


def _patient_update(e, ctx, who):
    return f"{who} changed the record of patient {e.object_repr}: {changes(e) or 'no visible change'}"


def _sample_create(e, ctx, who):
    v = e.new_values
    text = f"{who} registered sample {v.get('accession_number') or e.object_repr}"
    details = [value_label(e.object_type, "specimen_type", v.get("specimen_type"))] if v.get("specimen_type") else []
    if v.get("priority") == "stat":
        details.append("STAT")
    if v.get("wbc_count"):
        details.append(f"WBC {v['wbc_count']} ×10⁹/L")
    return text + (f" ({', '.join(details)})" if details else "")


_STATUS_SENTENCES = {
    "images_uploaded": "{acc} has images waiting for classification",
    "classifying": "{acc} is being classified",
    "awaiting_review": "{acc} is ready for review",
    "signed": "{acc} is signed and locked",
    "amended": "{acc} is open for amendment",
    "cancelled": "{who} cancelled {acc}",
}


def _sample_update(e, ctx, who):
    acc = ctx.accession(e.object_id)
    sentences = []
    if _changed(e, "status"):
        status = e.new_values["status"]
        template = _STATUS_SENTENCES.get(status, "{acc} is now " + value_label(e.object_type, "status", status))
        sentence = template.format(who=who, acc=acc)
        sentences.append(sentence[0].upper() + sentence[1:])
    if _changed(e, "review_comment"):
        comment = e.new_values["review_comment"]
        sentences.append(
            f"{who} wrote the sample comment of {acc}: {_quote(comment)}" if comment
            else f"{who} removed the sample comment of {acc}"
        )
    rest = changes(e, skip=("status", "review_comment"))
    if rest:
        sentences.append(f"{who} changed {acc}: {rest}")
    return ". ".join(sentences) or f"{who} changed {acc}"


def _cell_name(e, ctx) -> str:
    return f"cell {e.object_id}"


def _cell_create(e, ctx, who):
    v = e.new_values
    acc = ctx.accession(v.get("sample_id"))
    of = ctx.of(acc)
    origin = v.get("origin", "uploaded")
    if origin == "detected":
        where = f"field {v.get('field_id')}"
        return Line(
            f"The detector found a white cell (cell {e.object_id}) in {where}{of}",
            group=("detected", v.get("field_id")),
            group_text=f"The detector found {{n}} white cells in {where}{of}",
        )
    if origin == "added":
        field_name = f"field {v.get('field_id')}"
        return f"{who} marked a white cell the detector missed (cell {e.object_id}) on {field_name}{of}"
    return Line(
        f"{who} uploaded an image ({v.get('original_filename', 'a file')}, cell {e.object_id}) to {acc}",
        group=("upload", e.actor_username, acc),
        group_text=f"{who} uploaded {{n}} images to {acc}",
    )


def _cell_update(e, ctx, who):
    cell = _cell_name(e, ctx)
    acc = ctx.sample_of_cell(e.object_id)
    of = ctx.of(acc)
    if _changed(e, "rejected_at"):
        if e.new_values["rejected_at"]:
            return f"{who} rejected {cell}{of}: not a white cell"
        return f"{who} restored {cell}{of}: it counts again"
    if _changed(e, "status"):
        status = e.new_values["status"]
        if status == "failed":
            error = e.new_values.get("error_message") or ""
            return f"Classification of {cell}{of} failed" + (f": {error}" if error else "")
        if status == "classifying":
            return Line(f"{cell.capitalize()}{of} is being classified", quiet=True)
        if status == "classified":
            return Line(f"{cell.capitalize()}{of} was classified", quiet=True)
        if status == "queued":
            return Line(f"{cell.capitalize()}{of} was queued for classification again", group=("requeued", acc),
                        group_text=f"{{n}} cells{of} were queued for classification again")
    rest = changes(e, skip=("error_message",))
    return f"{who} changed {cell}{of}: {rest}" if rest else f"{cell.capitalize()}{of} was updated"


def _field_create(e, ctx, who):
    v = e.new_values
    acc = ctx.accession(v.get("sample_id"))
    return Line(
        f"{who} uploaded a whole field ({v.get('original_filename', 'a file')}, field {e.object_id}) to {acc}",
        group=("field-upload", e.actor_username, acc),
        group_text=f"{who} uploaded {{n}} whole fields to {acc}",
    )


def _field_update(e, ctx, who):
    acc = ctx.accession(ctx.values("cases.field", e.object_id).get("sample_id"))
    of = ctx.of(acc)
    name = f"field {e.object_id}{of}"
    if _changed(e, "status"):
        status = e.new_values["status"]
        if status == "detected":
            found = e.new_values.get("white_cells_found")
            return f"The detector found {found if found is not None else 'the'} white cells in {name}"
        if status == "failed":
            error = e.new_values.get("error_message") or ""
            return f"White-cell detection failed for {name}" + (f": {error}" if error else "")
        if status == "detecting":
            return f"The detector is searching {name} for white cells"
    rest = changes(e)
    return f"{who} changed {name}: {rest}" if rest else f"{name.capitalize()} was updated"


def _prediction_create(e, ctx, who):
    v = e.new_values
    image = v.get("image_id")
    acc = ctx.sample_of_cell(image)
    of = ctx.of(acc)
    model = ctx.model_name(v.get("model_version_id"))
    ai = f"The shadow model {model}" if "shadow" in (e.reason or "") else f"The AI ({model})"
    confidence = v.get("confidence")
    sure = f", {round(float(confidence) * 100)}% sure" if confidence not in (None, "") else ""
    guess = class_label(v.get("predicted_class", ""))
    if v.get("unidentified"):
        text = f"{ai} could not identify cell {image}{of} (best guess {guess}{sure})"
    else:
        text = f"{ai} classified cell {image}{of} as {guess}{sure}"
    return Line(text, group=("ai", model, acc, e.reason), group_text=f"{ai} classified {{n}} cells{of}")


def _prediction_update(e, ctx, who):
    image = ctx.values(e.object_type, e.object_id).get("image_id")
    acc = ctx.sample_of_cell(image)
    of = ctx.of(acc)
    if _changed(e, "heatmap"):
        return Line(f"A heatmap was computed for cell {image}{of}", group=("heatmap", acc),
                    group_text=f"Heatmaps were computed for {{n}} cells{of}")
    return f"The AI's classification of cell {image}{of} changed: {changes(e)}"


def _review_create(e, ctx, who):
    v = e.new_values
    image = v.get("image_id")
    acc = ctx.sample_of_cell(image)
    of = ctx.of(acc)
    final, ai = v.get("final_class", ""), v.get("ai_class", "")
    if final == EXCLUDED:
        return f"{who} excluded cell {image}{of} from the count"
    if not ai:
        return f"{who} classified cell {image}{of} as {class_label(final)}"
    if final == ai:
        return Line(
            f"{who} confirmed cell {image}{of} as {class_label(final)}",
            group=("confirm", e.actor_username, acc, final),
            group_text=f"{who} confirmed {{n}} cells{of} as {class_label(final)}",
        )
    return f"{who} reclassified cell {image}{of} from {class_label(ai)} to {class_label(final)}"


def _review_update(e, ctx, who):
    image = ctx.values(e.object_type, e.object_id).get("image_id", "?")
    acc = ctx.sample_of_cell(image)
    of = ctx.of(acc)
    sentences = []
    if _changed(e, "final_class"):
        old, new = (e.old_values or {}).get("final_class", ""), e.new_values["final_class"]
        if new == EXCLUDED:
            sentences.append(f"{who} excluded cell {image}{of} from the count (was {class_label(old)})")
        elif old == EXCLUDED:
            sentences.append(f"{who} counted cell {image}{of} again, as {class_label(new)}")
        else:
            sentences.append(f"{who} reclassified cell {image}{of} from {class_label(old)} to {class_label(new)}")
    if _changed(e, "comment"):
        comment = e.new_values["comment"]
        sentences.append(
            f"{who} commented on cell {image}{of}: {_quote(comment)}" if comment
            else f"{who} removed the comment on cell {image}{of}"
        )
    return ". ".join(sentences) or f"{who} reviewed cell {image}{of} again"


def _signature_create(e, ctx, who):
    v = e.new_values
    acc = ctx.accession(v.get("sample_id"))
    version = v.get("version") or 1
    if int(version) > 1:
        return f"{who} signed the amended report of {acc} (version {version})"
    return f"{who} signed the report of {acc}"


def _amendment_create(e, ctx, who):
    v = e.new_values
    acc = ctx.accession(v.get("sample_id"))
    return f"{who} reopened the signed report of {acc} for amendment: {_quote(v.get('reason', ''))}"


def _user_update(e, ctx, who):
    if _changed(e, "groups"):
        old = value_label(e.object_type, "groups", (e.old_values or {}).get("groups") or []) or "(none)"
        new = value_label(e.object_type, "groups", e.new_values["groups"]) or "(none)"
        return f"{who} changed the roles of {e.object_repr} from {old} to {new}"
    return f"{who} changed the account of {e.object_repr}: {changes(e) or 'no visible change'}"


def _object_phrase(e, ctx) -> str:
    if e.object_type == "cases.sample":
        return ctx.accession(e.object_id)
    if e.object_type == "cases.cellimage":
        return f"cell {e.object_id} of {ctx.sample_of_cell(e.object_id)}"
    if e.object_type == "cases.field":
        return f"field {e.object_id} of {ctx.accession(ctx.values('cases.field', e.object_id).get('sample_id'))}"
    if e.object_type == "classifier.prediction":
        image = ctx.values(e.object_type, e.object_id).get("image_id")
        return f"cell {image} of {ctx.sample_of_cell(image)}" if image else f"prediction {e.object_id}"
    return f"{type_label(e.object_type)} {e.object_repr or e.object_id}".strip()


def _download(e, ctx, who):
    what = (e.reason or "a file").removesuffix(" downloaded").strip() or "a file"
    return f"{who} downloaded the {what} of {_object_phrase(e, ctx)}"


def _signature_failed(e, ctx, who):
    return f"{who} tried to sign {ctx.accession(e.object_id)}, but the password was refused"


DESCRIBERS: dict[tuple[str, str], Describer] = {
    ("cases.patient", "create"): _patient_create,
    ("cases.patient", "update"): _patient_update,
    ("cases.sample", "create"): _sample_create,
    ("cases.sample", "update"): _sample_update,
    ("cases.sample", "signature_failed"): _signature_failed,
    ("cases.cellimage", "create"): _cell_create,
    ("cases.cellimage", "update"): _cell_update,
    ("cases.field", "create"): _field_create,
    ("cases.field", "update"): _field_update,
    ("classifier.prediction", "create"): _prediction_create,
    ("classifier.prediction", "update"): _prediction_update,
    ("review.cellreview", "create"): _review_create,
    ("review.cellreview", "update"): _review_update,
    ("review.signature", "create"): _signature_create,
    ("review.amendment", "create"): _amendment_create,
    ("accounts.user", "update"): _user_update,
}
# Actions told the same way whatever the record.
ACTION_DESCRIBERS: dict[str, Describer] = {
    "login": lambda e, ctx, who: f"{who} signed in",
    "logout": lambda e, ctx, who: f"{who} signed out",
    "login_failed": lambda e, ctx, who: f"A sign-in as “{e.object_repr}” failed (wrong username or password)",
    "two_factor_enrolled": lambda e, ctx, who: f"{who} set up two-factor sign-in",
    "download": _download,
}


def type_label(object_type: str) -> str:
    try:
        return str(apps.get_model(object_type)._meta.verbose_name)
    except (LookupError, ValueError):
        return object_type.rpartition(".")[2] or "record"


def generic(event: AuditEvent, who: str) -> str:
    """The sentence of an event no describer knows (and of one whose describer failed)."""
    thing = f"{type_label(event.object_type)} {event.object_repr or event.object_id}".strip()
    if event.action == "create":
        return f"{who} created {thing}"
    if event.action == "delete":
        return f"{who} deleted {thing}"
    if event.action == "update":
        try:
            detail = changes(event)
        except Exception:  # noqa: BLE001 - a sentence must never break the page
            detail = ""
        return f"{who} changed {thing}" + (f": {detail}" if detail else "")
    action = (event.action or "did something").replace("_", " ")
    return f"{who}: {action}" + (f" ({thing})" if thing else "")


def _who(event: AuditEvent, ctx: Context) -> str:
    try:
        return ctx.person(event)
    except Exception:  # noqa: BLE001 - a deleted or odd account still gets a name
        return event.actor_username or SYSTEM


def describe(event: AuditEvent, ctx: Context | None = None) -> Line:
    """The sentence of one event (``ctx``: what the sentences of a batch need, read once)."""
    ctx = ctx or Context([event])
    who = _who(event, ctx)
    describer = DESCRIBERS.get((event.object_type, event.action)) or ACTION_DESCRIBERS.get(event.action)
    if describer is not None:
        try:
            line = describer(event, ctx, who)
            return line if isinstance(line, Line) else Line(str(line))
        except Exception:  # noqa: BLE001 - stored data of any age: a sentence must never break the page
            logger.warning("No sentence for audit event %s (%s %s)", event.pk, event.action, event.object_type,
                           exc_info=True)
    return Line(generic(event, who))


def narrate(events: Iterable[AuditEvent], *, group: bool = True, sample_id=None) -> list[Entry]:
    """The events (in the order given) as sentences; with ``group``, a run of alike events in a
    row (12 images uploaded by one person) becomes one sentence, and a quiet step joins the line
    before it. With ``sample_id`` (the history
    of one sample) its cells and fields are not followed by "of sample …"."""
    events = list(events)
    ctx = Context(events, sample_id=sample_id)
    entries: list[Entry] = []
    for event in events:
        line = describe(event, ctx)
        last = entries[-1] if entries else None
        if group and line.quiet and last is not None:
            last.events.append(event)
            continue
        if group and line.group is not None and last is not None and last.group == line.group:
            last.events.append(event)
            last.size += 1
            last.text = line.group_text.format(n=last.size)
            continue
        entries.append(
            Entry(when=event.timestamp, who=_who(event, ctx), text=line.text, reason=event.reason,
                  events=[event], group=line.group)
        )
    return entries
