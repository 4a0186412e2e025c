"""Walk the hash chains of the audit trail and the signatures (see audit.chain)."""
from django.core.management.base import BaseCommand, CommandError

from audit.chain import chain_verify
from audit.selectors import chained_models

# Heads printed before the audit trail and the signatures had apps of their own still count.
FORMER_TABLE_NAMES = {"cases.auditevent": "audit.auditevent", "cases.signature": "review.signature"}


def _anchor(value: str) -> tuple[str, int, str]:
    table, sep, rest = value.partition(":")
    seq, sep2, digest = rest.partition(":")
    if not (sep and sep2 and seq.isdigit() and len(digest) == 64):
        raise CommandError(f"--anchor {value!r}: expected TABLE:SEQ:HASH as printed by an earlier run.")
    return FORMER_TABLE_NAMES.get(table, table), int(seq), digest


class Command(BaseCommand):
    help = (
        "Verify the audit trail and the signatures: print OK with the number of rows and the head of each "
        "chain, or name the first row that was edited, deleted or inserted out of order and exit 1."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--anchor", action="append", default=[], metavar="TABLE:SEQ:HASH",
            help="A head printed by an earlier run (kept outside the database): that row must still carry "
                 "that hash. Catches a chain rewritten from some row onwards, or rows deleted from its end.",
        )

    def handle(self, *args, anchor: list[str], **options):
        models = chained_models()
        anchors = {}
        for table, seq, digest in map(_anchor, anchor):
            if table not in {m._meta.label_lower for m in models}:
                raise CommandError(f"--anchor: unknown table {table!r}.")
            anchors[table] = (seq, digest)
        problems = []
        for model in models:
            check = chain_verify(model=model, anchor=anchors.get(model._meta.label_lower))
            if check.ok:
                self.stdout.write(f"OK {check.table}: {check.rows} rows, head {check.head}")
            else:
                problems.append(check.problem)
        if problems:
            raise CommandError("Tampering found:\n" + "\n".join(problems))
