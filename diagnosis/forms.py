from django import forms

from .images import check_upload, study_fields
from .models import AGE_MAX, AGE_MIN, Patient, Study
from .permissions import writable_patients


MRN_TAKEN = "You already have a patient with this MRN."


class PatientForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = ["mrn", "name", "sex", "date_of_birth"]
        widgets = {"date_of_birth": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args, owner, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner

    def clean_mrn(self):
        mrn = self.cleaned_data["mrn"].strip()
        if Patient.objects.filter(owner=self.owner, mrn=mrn).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(MRN_TAKEN)
        return mrn

    def save(self, commit=True):
        self.instance.owner = self.owner
        return super().save(commit=commit)


class UploadForm(forms.Form):
    patient = forms.ModelChoiceField(queryset=Patient.objects.none(), empty_label="Choose a patient…")
    age = forms.DecimalField(
        label="Age at acquisition (years)",
        min_value=AGE_MIN,
        max_value=AGE_MAX,
        max_digits=5,
        decimal_places=2,
        required=False,
        help_text="May be left empty for a DICOM file that records the patient's age.",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "max": "120"}),
    )
    image = forms.FileField(
        label="Chest X-ray (JPEG, PNG or DICOM)",
        widget=forms.ClearableFileInput(attrs={"accept": "image/jpeg,image/png,application/dicom,.dcm"}),
    )
    view = forms.ChoiceField(choices=Study.View.choices, initial=Study.View.PA)
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["patient"].queryset = writable_patients(user)

    def clean_image(self):
        return check_upload(self.cleaned_data.get("image"))

    def clean(self):
        data = super().clean()
        if "image" in data and "age" not in self.errors:
            data["age"], data["view"], data["source_notes"] = study_fields(
                data["image"], age=data.get("age"), view=data.get("view")
            )
        return data
