import hashlib
import shutil
from decimal import Decimal
from pathlib import Path

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.base import ContentFile
from PIL import Image

from diagnosis.models import Patient, Prediction, Study
from ml.explain import heatmap_png

XRAYS = Path(__file__).parent / "fixtures" / "xrays"
PASSWORD = "correct-horse-battery-staple"


def xray_bytes(name="normal-1.jpeg"):
    return (XRAYS / name).read_bytes()


def make_kermany(root, files):
    """files: {"NORMAL/IM-0001-0001.jpeg": source fixture name, ...}"""
    for rel, fixture in files.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(XRAYS / fixture, path)
    return Path(root)


def tiny_kermany(root):
    """Eight byte-distinct real X-rays in the Kermany layout: four patients per class."""
    files = {}
    for i in range(4):
        files[f"NORMAL/IM-{i:04d}-0001.jpeg"] = f"normal-{i % 2 + 1}.jpeg"
        files[f"PNEUMONIA/person{i}_virus_{i}.jpeg"] = f"pneumonia-{i % 2 + 1}.jpeg"
    make_kermany(root, files)
    # Copies of the same four images would be dropped as duplicates: make each file unique.
    for k, path in enumerate(sorted(Path(root).rglob("*.jpeg"))):
        image = Image.open(path).convert("L")
        image.putpixel((0, 0), k)
        image.save(path, quality=95)
    return Path(root)


def tiny_adults(root):
    """Eight byte-distinct real adult X-rays with ages (a CSV source like nih_pneumonia): four patients per class."""
    root = Path(root)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = ["path,label,age,patient,view"]
    for i in range(8):
        label = "PNEUMONIA" if i % 2 else "NORMAL"
        image = Image.open(XRAYS / f"adult-{label.lower()}-1.jpeg").convert("L")
        image.putpixel((0, 0), i)  # byte-distinct, so deduplication keeps every row
        image.save(root / "img" / f"{i}.jpeg", quality=95)
        rows.append(f"img/{i}.jpeg,{label},{30 + 5 * i},a{i},{'AP' if i % 4 < 2 else 'PA'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root / "labels.csv"


# ml.cli.train arguments for seconds-long runs on a CPU: the ImageNet CNN (a dev requirement) and the age
# branch of the default preset, no ViT; the probe, then one short fine-tuning epoch.
TINY_TRAINING = ["--branches", "cnn,age", "--no-ood", "--workers", "0", "--batch-size", "4", "--no-augment",
                 "--val-fraction", "0.25", "--probe-epochs", "8", "--epochs", "1", "--epoch-samples", "8",
                 "--wise-alphas", "0,0.5,1"]


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"clinician{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def role(user, create, extracted, **kwargs):
        user.groups.add(Group.objects.get(name=extracted or "clinician"))
        user.is_staff = extracted == "reviewer"
        user.save()


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    mrn = factory.Sequence(lambda n: f"MRN{n:05d}")
    name = factory.Faker("name")
    sex = Patient.Sex.FEMALE
    owner = factory.SubFactory(UserFactory)


def sha256_of_content(content):
    """The digest of a ContentFile about to be stored (read, then rewound), as the upload path records it."""
    if not hasattr(content, "read"):  # a name given as it is: no file to hash
        return ""
    content.seek(0)
    digest = hashlib.file_digest(content, "sha256").hexdigest()
    content.seek(0)
    return digest


class StudyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Study

    class Params:
        xray = "normal-1.jpeg"

    patient = factory.SubFactory(PatientFactory)
    image = factory.LazyAttribute(lambda o: ContentFile(xray_bytes(o.xray), name="x.jpg"))
    original_filename = factory.LazyAttribute(lambda o: o.xray)
    image_sha256 = factory.LazyAttribute(lambda o: sha256_of_content(o.image))
    image_width = 224
    image_height = 224
    age_years = Decimal("3.5")
    uploaded_by = factory.LazyAttribute(lambda o: o.patient.owner)


class PredictionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prediction

    study = factory.SubFactory(StudyFactory)

    class Params:
        succeeded = factory.Trait(
            status=Prediction.Status.SUCCEEDED,
            label=Prediction.Label.PNEUMONIA,
            probability=0.91,
            threshold=0.5,
            model_name="compact-test",
            model_sha256="ab" * 32,
            ood=False,
        )
        # A child's PNEUMONIA result with the secondary bacterial / viral output (issue 17).
        bacterial = factory.Trait(
            succeeded=True,
            population="pediatric",
            subtype=Prediction.Subtype.BACTERIAL,
            subtype_probability=0.83,
            subtype_validation={"auc": 0.912, "ci95": [0.88, 0.94], "n": 561, "validated_ages": [1, 5]},
        )
        rejected = factory.Trait(
            status=Prediction.Status.REJECTED,
            ood=True,
            ood_reason="The image is in colour; chest X-rays are grayscale.",
            threshold=0.5,
            model_name="compact-test",
            model_sha256="ab" * 32,
        )


def with_heatmaps(prediction):
    """Store a small real heatmap PNG for each branch of a finished prediction, with its sha256 as the worker does."""
    png = heatmap_png([[0.0, 1.0], [0.5, 0.2]])
    for field in Prediction.HEATMAP_BRANCHES.values():
        getattr(prediction, field).save("map.png", ContentFile(png), save=False)
        setattr(prediction, f"{field}_sha256", hashlib.sha256(png).hexdigest())
    # A queryset update: a finished prediction refuses model-field changes through save().
    Prediction.objects.filter(pk=prediction.pk).update(
        **{name: getattr(prediction, name) if name.endswith("_sha256") else getattr(prediction, name).name
           for field in Prediction.HEATMAP_BRANCHES.values() for name in (field, f"{field}_sha256")})
    return prediction
