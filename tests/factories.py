"""Test records, built through factory_boy and, where a row must obey a rule, through the services.

``CellImageFactory`` uploads through ``cases.services.images_upload`` (decoded, hashed, stored,
audited); ``CellReviewFactory`` and ``SignatureFactory`` go through ``review.services`` (a
signature carries its snapshot and its place in the hash chain). ``ModelVersionFactory`` and
``PredictionFactory`` write rows as a worker would store them (the audit receivers still see them).
"""
import datetime
import io

import factory
from django.contrib.auth.models import Group
from django.utils import timezone
from PIL import Image

from accounts.models import User
from accounts.roles import Role
from cases.models import CellImage, ImageStatus, Patient, Sample, SampleStatus
from cases.services import image_set_status, images_upload, sample_refresh_classification_status, sample_transition
from classifier.models import ModelVersion, Prediction
from classifier.selectors import latest_prediction
from review import services as reviews
from review.models import CellReview, Signature

PASSWORD = "correct-horse-battery-42"
CONFIDENT, UNSURE = 0.93, 0.45  # a cell predicted with UNSURE is below every test model's threshold
MODEL_CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")  # a four-class model, like the BCCD one


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"User{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            self.groups.add(Group.objects.get(name=str(extracted)))
            if str(extracted) == "admin":
                self.is_staff = True
        if create:
            self.save()


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    mrn = factory.Sequence(lambda n: f"MRN{n:06d}")
    family_name = factory.Faker("last_name")
    given_name = factory.Faker("first_name")
    date_of_birth = datetime.date(1970, 5, 17)
    sex = "F"


class SampleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sample

    accession_number = factory.Sequence(lambda n: f"HV-TEST-{n:06d}")
    patient = factory.SubFactory(PatientFactory)
    collected_at = factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(hours=2))
    received_at = factory.LazyFunction(timezone.now)


def image_bytes(fmt: str = "PNG", size=(64, 48), color=(180, 120, 200), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 128).save(buf, format=fmt)
    return buf.getvalue()


def _distinct_png(n: int) -> bytes:
    """A valid PNG that differs from the n-1 before it (the upload refuses a second copy in a sample)."""
    return image_bytes(color=(n % 251, (n // 251) % 251, 200))


class CellImageFactory(factory.django.DjangoModelFactory):
    """An image uploaded through ``images_upload``: ``CellImageFactory(sample=s, content=bytes)``.

    ``status`` (default queued, as uploaded) is then set through ``image_set_status``.
    """

    class Meta:
        model = CellImage

    sample = factory.SubFactory(SampleFactory)
    uploaded_by = factory.SubFactory(UserFactory, role=Role.TECHNICIAN)
    original_filename = factory.Sequence(lambda n: f"cell{n}.png")
    content = factory.Sequence(_distinct_png)
    status = ImageStatus.QUEUED

    @classmethod
    def _create(cls, model_class, *, sample, uploaded_by, original_filename, content, status):
        result = images_upload(actor=uploaded_by, sample=sample, files=[(original_filename, content)])
        assert result.accepted, f"the upload was refused: {result.rejected}"
        image = result.accepted[0]
        if status != ImageStatus.QUEUED:
            image_set_status(image=image, status=status)
        return image


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A registered model version (not a real file: tests that run the model use the real one)."""

    class Meta:
        model = ModelVersion
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"test-model-{n}")
    file_path = factory.LazyAttribute(lambda o: f"{o.name}.keras")
    sha256 = "0" * 64
    threshold = 0.6
    is_active = False


def _probabilities(o) -> dict:
    others = (1 - o.confidence) / (len(MODEL_CLASSES) - 1)
    return {c: (o.confidence if c == o.predicted_class else others) for c in MODEL_CLASSES}


class PredictionFactory(factory.django.DjangoModelFactory):
    """The AI's verdict on one image, as a worker stores it; ``unidentified=True`` gives a low confidence.

    ``with_heatmap=True`` attaches a Grad-CAM PNG.
    """

    class Meta:
        model = Prediction

    class Params:
        with_heatmap = factory.Trait(
            heatmap=factory.django.ImageField(filename="heatmap.png", format="PNG", width=32, height=32)
        )

    image = factory.SubFactory(CellImageFactory)
    model_version = factory.SubFactory(ModelVersionFactory)
    predicted_class = "NEUTROPHIL"
    unidentified = False
    confidence = factory.LazyAttribute(lambda o: UNSURE if o.unidentified else CONFIDENT)
    probabilities = factory.LazyAttribute(_probabilities)
    inference_ms = 10.0


def make_classified_sample(*, technician, files, ai_classes, unidentified=(), wbc_count=None, model_name="test-model"):
    """A sample whose images went through upload and classification, awaiting review.

    ``files``: list of (name, bytes); ``ai_classes``: the AI class per file; ``unidentified``:
    indexes of cells predicted with low confidence. The images are uploaded by ``technician``
    and classified by the active model version ``model_name`` (created if missing).
    """
    sample = SampleFactory(wbc_count=wbc_count)
    images = images_upload(actor=technician, sample=sample, files=files).accepted
    assert len(images) == len(files)
    version = ModelVersionFactory(name=model_name, threshold=0.6, is_active=True)
    sample_transition(sample=sample, to_status=SampleStatus.CLASSIFYING)
    for i, (image, cls) in enumerate(zip(images, ai_classes, strict=True)):
        PredictionFactory(image=image, model_version=version, predicted_class=cls, unidentified=i in unidentified)
        image_set_status(image=image, status=ImageStatus.CLASSIFIED)
    sample_refresh_classification_status(sample=sample)
    sample.refresh_from_db()
    assert sample.status == SampleStatus.AWAITING_REVIEW
    return sample


def _awaiting_review_image():
    sample = make_classified_sample(
        technician=UserFactory(role=Role.TECHNICIAN), files=[("cell.png", _distinct_png(0))], ai_classes=["NEUTROPHIL"]
    )
    return sample.images.get()


class CellReviewFactory(factory.django.DjangoModelFactory):
    """A doctor's verdict through ``review.services.cell_review``; by default it confirms the AI's class.

    ``image`` must be classified in a sample awaiting review (the default builds one).
    """

    class Meta:
        model = CellReview

    image = factory.LazyFunction(_awaiting_review_image)
    reviewed_by = factory.SubFactory(UserFactory, role=Role.DOCTOR)
    final_class = factory.LazyAttribute(lambda o: latest_prediction(image=o.image).predicted_class)
    comment = None

    @classmethod
    def _create(cls, model_class, *, image, reviewed_by, final_class, comment):
        return reviews.cell_review(actor=reviewed_by, image=image, final_class=final_class, comment=comment)


def _awaiting_review_sample():
    return make_classified_sample(
        technician=UserFactory(role=Role.TECHNICIAN),
        files=[("cell1.png", _distinct_png(1)), ("cell2.png", _distinct_png(2))],
        ai_classes=["NEUTROPHIL", "LYMPHOCYTE"],
    )


class SignatureFactory(factory.django.DjangoModelFactory):
    """A sign-off through ``review.services.sample_sign`` (snapshot, hash chain, audit, status).

    ``signer`` first confirms the AI's class of every cell not yet reviewed. A signed ``sample`` is
    amended first (``sample_amend`` with ``amendment_reason``), so the signature is its next version.
    ``count_override_reason`` signs a sample below the lab's minimum cell count (test samples are).
    """

    class Meta:
        model = Signature

    sample = factory.LazyFunction(_awaiting_review_sample)
    signer = factory.SubFactory(UserFactory, role=Role.DOCTOR)
    amendment_reason = "correction"
    count_override_reason = "a test sample with few cells"

    @classmethod
    def _create(cls, model_class, *, sample, signer, amendment_reason, count_override_reason):
        if sample.status == SampleStatus.SIGNED:
            reviews.sample_amend(actor=signer, sample=sample, reason=amendment_reason)
        for image in sample.images.filter(status=ImageStatus.CLASSIFIED, review__isnull=True):
            reviews.cell_review(actor=signer, image=image, final_class=latest_prediction(image=image).predicted_class)
        signature = reviews.sample_sign(
            actor=signer, sample=sample, password=PASSWORD, count_override_reason=count_override_reason
        )
        sample.refresh_from_db()
        return signature
