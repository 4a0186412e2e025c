import datetime
import io

import factory
from django.contrib.auth.models import Group
from django.utils import timezone
from PIL import Image

from accounts.models import User
from cases.models import Patient, Sample

PASSWORD = "correct-horse-battery-42"


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


def make_classified_sample(*, technician, files, ai_classes, unidentified=(), wbc_count=None, model_name="test-model"):
    """A sample whose images went through upload and classification (predictions stored directly).

    ``files``: list of (name, bytes); ``ai_classes``: the AI class per file; ``unidentified``:
    indexes of cells predicted with low confidence.
    """
    from cases.models import CellImage, ImageStatus, SampleStatus
    from cases.services import images_upload, sample_transition
    from classifier.models import ModelVersion, Prediction

    sample = SampleFactory(wbc_count=wbc_count)
    images = images_upload(actor=technician, sample=sample, files=files).accepted
    assert len(images) == len(files)
    version, _ = ModelVersion.objects.get_or_create(
        name=model_name, defaults={"file_path": "x.keras", "sha256": "0" * 64, "threshold": 0.6, "is_active": True}
    )
    for i, (image, cls) in enumerate(zip(images, ai_classes, strict=True)):
        low = i in unidentified
        conf = 0.45 if low else 0.93
        others = (1 - conf) / 3
        probs = {c: (conf if c == cls else others) for c in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")}
        Prediction.objects.create(
            image=image, model_version=version, predicted_class=cls, probabilities=probs, confidence=conf,
            unidentified=low, inference_ms=10.0,
        )
    CellImage.objects.filter(sample=sample).update(status=ImageStatus.CLASSIFIED)
    sample_transition(sample=sample, to_status=SampleStatus.CLASSIFYING)
    sample_transition(sample=sample, to_status=SampleStatus.AWAITING_REVIEW)
    sample.refresh_from_db()
    return sample
