from django import forms
from django.conf import settings

from .images import check_each, check_upload, study_fields
from .models import AGE_MAX, AGE_MIN, Patient, Prediction, Study
from .permissions import writable_patients
from .services import clean_mrn, review_errors


class PatientForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["mrn", "name", "sex", "date_of_birth"]
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_mrn(self):
        return clean_mrn(self.cleaned_data["mrn"], owner=self.owner, patient=self.instance)

    def save(self, commit=True):
        self.instance.owner = self.owner
        return super().save(commit=commit)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """One or more files in one field: cleans to a list."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = [item for item in (data if isinstance(data, (list, tuple)) else [data]) if item is not None]
        if not files:
            return [super().clean(None, initial)]  # "This field is required."
        if len(files) == 1:
            return [super().clean(files[0], initial)]
        # Several: each file is judged on its own by images.check_each (an empty one is refused
        # alone, by name), so one bad file never costs the others their upload.
        return files


class UploadForm(forms.Form):
    patient = forms.ModelChoiceField(queryset=Patient.objects.none(), empty_label="Choose a patient…")
    age = forms.DecimalField(
        label="Age at acquisition (years)",
        min_value=AGE_MIN,
        max_value=AGE_MAX,
        max_digits=5,
        decimal_places=2,
        required=False,
        help_text="May be left empty: the age then comes from the patient's birth date, else the DICOM file; "
                  "without any, the most sensitive operating point is used.",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": str(AGE_MIN), "max": str(AGE_MAX)}),
    )
    image = MultipleFileField(
        label="Chest X-rays (JPEG, PNG or DICOM; choose several to upload them together)",
        widget=MultipleFileInput(attrs={"accept": "image/jpeg,image/png,application/dicom,.dcm"}),
    )
    view = forms.ChoiceField(choices=Study.View.choices, initial=Study.View.PA)
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = writable_patients(user)

    def clean_image(self):
        uploads = self.cleaned_data.get("image") or []
        limit = settings.PNEUMOWEB_MAX_BATCH_FILES
        if len(uploads) > limit:
            raise forms.ValidationError(f"{len(uploads)} files: upload at most {limit} at once.")
        if len(uploads) == 1:
            check_upload(uploads[0])  # one file: its message alone, as the field's error
        return uploads

    def clean(self):
        """Each file becomes its own study; ``accepted`` and ``refused`` say which (one bad file never blocks the rest)."""
        data = super().clean()
        if "image" not in data or "age" in self.errors:
            return data
        birth_date = data["patient"].date_of_birth if data.get("patient") else None
        if len(data["image"]) == 1:  # one file: its errors go to the fields they concern, as before batches
            checked = check_upload(data["image"][0])
            self.accepted = [(checked, *study_fields(checked, age=data.get("age"), view=data.get("view"),
                                                     date_of_birth=birth_date))]
            self.refused = []
            return data
        self.accepted, self.refused = check_each(data["image"], age=data.get("age"), view=data.get("view"),
                                                 date_of_birth=birth_date)
        if not self.accepted:
            raise forms.ValidationError([f"{name}: {' '.join(messages)}" for name, messages in self.refused])
        return data


class ReviewForm(forms.Form):
    """A reviewer's verdict on the result page: the same rules as the API and the admin (``review_errors``)."""

    review_verdict = forms.ChoiceField(label="Verdict", choices=Prediction.Verdict.choices, widget=forms.RadioSelect)
    review_label = forms.ChoiceField(label="Corrected label (when you disagree)", required=False,
                                     choices=[("", "—"), *Prediction.Label.choices])
    review_comment = forms.CharField(label="Comment", required=False, max_length=4000,
                                     widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self):
        data = super().clean()
        errors = review_errors(verdict=data.get("review_verdict"), label=data.get("review_label"),
                               comment=data.get("review_comment"))
        for field, message in errors.items():
            self.add_error(field, message)
        return data
