"""The roles a user can have, in one place: what each is called, which group carries it, what it may do.

A role is a Django group whose permissions are listed here, as data (``"app.codename"``): the
permissions belong to the apps above this one (diagnosis, pacs), which this app names but never
imports. ``accounts/migrations/0002_roles.py`` gives each group exactly these permissions, and
``manage.py create_user NAME --role ROLE`` puts a user in the role's group.

- clinician: their own patients, studies and predictions;
- reviewer: every record, and the verdict on predictions (and the admin: staff status);
- admin: a reviewer who is also a superuser (user management, erasure, the audit trail);
- pacs: a sending system, not a person — stores DICOM instances through STOW-RS with an API token;
  it never signs in to pages and is asked for no second factor.
"""

CLINICIAN, REVIEWER, ADMIN, PACS_SENDER = "clinician", "reviewer", "admin", "pacs"
ROLES = (CLINICIAN, REVIEWER, ADMIN, PACS_SENDER)

# The group each role's users are in (an administrator is in the reviewers' group).
GROUP = {CLINICIAN: "clinician", REVIEWER: "reviewer", ADMIN: "reviewer", PACS_SENDER: "pacs-sender"}

# What each group may do. Changing a list here needs a migration that applies it (see 0002_roles).
PERMISSIONS = {
    "clinician": ["diagnosis.add_patient", "diagnosis.change_patient", "diagnosis.view_patient",
                  "diagnosis.add_study", "diagnosis.view_study", "diagnosis.add_prediction",
                  "diagnosis.view_prediction"],
    "reviewer": ["diagnosis.view_patient", "diagnosis.view_study", "diagnosis.view_prediction",
                 "diagnosis.change_prediction", "diagnosis.view_all_records", "diagnosis.review_prediction"],
    "pacs-sender": ["pacs.add_instance"],
}

# The permissions the rules of sign-in ask about.
SEES_EVERY_RECORD = "diagnosis.view_all_records"  # a reviewer's: their password alone would open every record
SENDS_DICOM = "pacs.add_instance"


def is_pacs_sender(user):
    """A sending system's account (role pacs): it holds a token, never a page session."""
    return user.is_authenticated and user.groups.filter(name=GROUP[PACS_SENDER]).exists()
