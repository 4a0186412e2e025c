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
