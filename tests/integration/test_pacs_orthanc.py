"""The hospital's path end to end: a real Orthanc, the DICOM listener, gunicorn and a worker on PostgreSQL + Redis.

One stack and one Orthanc (Debian's, config in a temp folder, free ports, stopped by PID) serve the
module. Orthanc pushes to the listener (C-STORE), the platform stores over STOW-RS, and the results
come back into Orthanc as a DICOM SR and a secondary capture. Under CI=true a missing Orthanc,
PostgreSQL or Redis fails these tests.
"""

import os
import shutil
import signal
import subprocess
import threading
import time

import pydicom
import pytest

from pacs.dicom_out import read_probability

from ..dicom_files import CT_IMAGE, chest, multipart_related, to_bytes
from ..orthanc import free_port, start_orthanc
from ..servers import POSTGRES_URL, REDIS_URL, in_ci, require
from ..stack import running_stack, wait_until

pytestmark = pytest.mark.integration
ATTEMPTS, BACKOFF = 6, 0.5  # an export given up on after 0.5 + 1 + 2 + 4 + 8 s of retries


@pytest.fixture(scope="module")
def listener_port():
    return free_port()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, listener_port):
    require(POSTGRES_URL, "PostgreSQL")
    require(REDIS_URL, "Redis")
    env = {"PNEUMOWEB_DICOM_ALLOWED_AETS": "ORTHANC", "PNEUMOWEB_DICOM_PORT": str(listener_port),
           "PNEUMOWEB_PACS_QUIET_SECONDS": "2", "PNEUMOWEB_PACS_TICK_SECONDS": "0.3",
           "PNEUMOWEB_DICOM_EXPORT_ATTEMPTS": str(ATTEMPTS), "PNEUMOWEB_DICOM_EXPORT_BACKOFF_SECONDS": str(BACKOFF),
           "PNEUMOWEB_DICOM_SEND_TIMEOUT_SECONDS": "5"}
    with running_stack(tmp_path_factory.mktemp("stack"), database_url=POSTGRES_URL, broker_url=REDIS_URL,
                       users=[("sender", "pacs")], extra_env=env) as stack:  # create_user --role pacs
        stack.start_listener()
        yield stack


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, stack, listener_port):
    # Orthanc's own DICOMweb client on its defaults (chunked bodies, Accept: application/dicom+json).
    servers = {"pneumoweb": {"Url": stack.url("/dicom-web/"),
                             "HttpHeaders": {"Authorization": f"Token {stack.token('sender')}"}}}
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"),
                           modalities={"pneumoweb": ["PNEUMOWEB", "127.0.0.1", listener_port]},
                           dicomweb_servers=servers)
    try:
        stack.query("INSERT INTO pacs_destination (name, kind, url, ae_title, host, enabled) "
                    "VALUES ('orthanc', 'dicomweb', %s, '', '', true) RETURNING id", (server.dicomweb_url,))
        yield server
    finally:
        server.stop()


def predictions_of(stack, study_uid):
    return stack.query(
        "SELECT p.id, p.status, p.probability, s.age_years FROM diagnosis_prediction p "
        "JOIN diagnosis_study s ON s.id = p.study_id JOIN pacs_instance i ON i.study_id = s.id "
        "JOIN pacs_imagingstudy m ON m.id = i.imaging_study_id WHERE m.study_instance_uid = %s", (study_uid,))


def exports_of(stack, study_uid, destination="orthanc"):
    return stack.query(
        "SELECT e.kind, e.status, e.attempts, e.sop_instance_uid, e.last_error FROM pacs_export e "
        "JOIN pacs_instance i ON i.id = e.instance_id JOIN pacs_imagingstudy m ON m.id = i.imaging_study_id "
        "JOIN pacs_destination d ON d.id = e.destination_id WHERE m.study_instance_uid = %s AND d.name = %s "
        "ORDER BY e.kind", (study_uid, destination))


def wait_for_exports(stack, study_uid, status="sent", kinds=("sc", "sr"), destination="orthanc", timeout=180):
    wait_until(lambda: [(row[0], row[1]) for row in exports_of(stack, study_uid, destination)] ==
               [(kind, status) for kind in kinds], timeout, f"{kinds} of {study_uid} to be {status}",
               interval=0.5, explain=lambda: f"{exports_of(stack, study_uid, destination)}\n{stack.explain()}")
    return exports_of(stack, study_uid, destination)


def stow(stack, *datasets):
    body, content_type = multipart_related(*(to_bytes(dataset) for dataset in datasets))
    with stack.http() as http:
        return http.post(stack.url("/dicom-web/studies"), data=body, timeout=60,
                         headers={"Content-Type": content_type, "Authorization": f"Token {stack.token('sender')}"})


def new_study_uid():
    return pydicom.uid.generate_uid()


@pytest.fixture(scope="module")
def pushed(stack, orthanc):
    """Orthanc pushes one study (a chest PA DX, a CT, a lateral) to the listener, and its result comes back."""
    study_uid = new_study_uid()
    ids = [orthanc.upload(to_bytes(dataset))["ID"] for dataset in (
        chest(study_uid=study_uid, patient_id="ORTH-1", age="045Y"),
        chest(study_uid=study_uid, patient_id="ORTH-1", modality="CT", sop_class=CT_IMAGE),
        chest(study_uid=study_uid, patient_id="ORTH-1", view="LL"))]
    assert orthanc.store_to("pneumoweb", ids).status_code == 200
    exports = wait_for_exports(stack, study_uid)
    return study_uid, ids, exports


def test_it_creates_patient_study_and_one_prediction_with_the_age_from_stow_rs(stack, orthanc):
    study_uid = new_study_uid()
    response = stow(stack, chest(study_uid=study_uid, patient_id="STOW-1", age="", birth_date="19800315",
                                 study_date="20260315"))
    assert response.status_code == 200, response.text
    wait_until(lambda: [row[1] for row in predictions_of(stack, study_uid)] == ["succeeded"], 180,
               "the STOW-RS study's prediction", interval=0.5, explain=stack.explain)
    (_, _, _, age), = predictions_of(stack, study_uid)
    assert float(age) == 46.0
    assert stack.query("SELECT p.mrn, u.username FROM diagnosis_patient p JOIN auth_user u ON u.id = p.owner_id "
                       "WHERE p.mrn = 'STOW-1'") == [("STOW-1", "pacs")]


def test_it_predicts_the_frontal_film_of_a_pushed_study_once(stack, orthanc, pushed):
    study_uid, ids, _ = pushed
    assert len(predictions_of(stack, study_uid)) == 1
    outcomes = sorted(row[0] for row in stack.query(
        "SELECT i.outcome FROM pacs_instance i JOIN pacs_imagingstudy m ON m.id = i.imaging_study_id "
        "WHERE m.study_instance_uid = %s", (study_uid,)))
    assert outcomes == ["skipped", "skipped", "submitted"]
    assert orthanc.store_to("pneumoweb", ids).status_code == 200  # the same study again
    stack.manage("dicom_tick")
    assert len(predictions_of(stack, study_uid)) == 1
    assert stack.query("SELECT count(*) FROM pacs_instance i JOIN pacs_imagingstudy m ON m.id = i.imaging_study_id "
                       "WHERE m.study_instance_uid = %s", (study_uid,)) == [(3,)]


def test_it_sends_an_sr_with_the_database_s_probability_and_a_secondary_capture(stack, orthanc, pushed, tmp_path):
    study_uid, _, exports = pushed
    srs = orthanc.qido_instances(Modality="SR", StudyInstanceUID=study_uid)
    assert len(srs) == 1
    (sr_id,) = orthanc.find("Instance", {"SOPInstanceUID": exports[1][3]})
    path = tmp_path / "sr.dcm"
    path.write_bytes(orthanc.http.get(f"{orthanc.http_url}/instances/{sr_id}/file", timeout=30).content)
    (_, _, probability, _), = predictions_of(stack, study_uid)
    assert read_probability(pydicom.dcmread(path)) == pytest.approx(probability, abs=1e-6)
    assert len(orthanc.find("Instance", {"SOPInstanceUID": exports[0][3]})) == 1  # the secondary capture
    if shutil.which("dciodvfy") is None:
        if in_ci():
            pytest.fail("dciodvfy is missing (Debian package dicom3tools)")
        pytest.skip("dciodvfy is missing (Debian package dicom3tools)")
    checked = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert not [line for line in (checked.stdout + checked.stderr).splitlines() if line.startswith("Error")], \
        checked.stderr


def test_it_delivers_once_what_was_due_while_orthanc_was_down(stack, orthanc):
    orthanc.stop()
    try:
        study_uid = new_study_uid()
        assert stow(stack, chest(study_uid=study_uid, patient_id="DOWN-1")).status_code == 200
        wait_until(lambda: any(row[2] >= 1 and row[4] for row in exports_of(stack, study_uid)), 180,
                   "a failed attempt while Orthanc is down", interval=0.3,
                   explain=lambda: f"{exports_of(stack, study_uid)}\n{stack.explain()}")
    finally:
        orthanc.start()
    exports = wait_for_exports(stack, study_uid)
    assert max(row[2] for row in exports) >= 2  # it was retried
    for _, _, _, sop_uid, _ in exports:
        (orthanc_id,) = orthanc.find("Instance", {"SOPInstanceUID": sop_uid})
        new = [c for c in orthanc.changes() if c["ChangeType"] == "NewInstance" and c["ID"] == orthanc_id]
        assert len(new) == 1


def test_it_gives_up_visibly_on_a_wrong_destination_after_its_retries(stack, orthanc):
    stack.query("INSERT INTO pacs_destination (name, kind, url, ae_title, host, port, enabled) VALUES "
                "('closed-port', 'dicomweb', %s, '', '', NULL, true), "
                "('wrong-ae', 'dimse', '', 'NOT-ORTHANC', '127.0.0.1', %s, true) RETURNING id",
                (f"http://127.0.0.1:{free_port()}/dicom-web", orthanc.dicom_port))
    try:
        study_uid = new_study_uid()
        assert stow(stack, chest(study_uid=study_uid, patient_id="WRONG-1")).status_code == 200
        closed = wait_for_exports(stack, study_uid, status="failed", destination="closed-port")
        rejected = wait_for_exports(stack, study_uid, status="failed", destination="wrong-ae")
        wait_for_exports(stack, study_uid)  # the right destination got them all the same
    finally:
        stack.query("UPDATE pacs_destination SET enabled = false WHERE name IN ('closed-port', 'wrong-ae') RETURNING id")
    assert {row[2] for row in closed} == {ATTEMPTS}  # retried, then given up: no loop
    assert {row[2] for row in rejected} == {1}  # an association rejected is not retried
    assert all("reject" in row[4].lower() for row in rejected), rejected


def test_it_creates_no_job_for_our_own_sr_pushed_back(stack, orthanc, pushed):
    study_uid, _, exports = pushed
    (sr_id,) = orthanc.find("Instance", {"SOPInstanceUID": exports[1][3]})
    assert orthanc.store_to("pneumoweb", [sr_id]).status_code == 200
    rows = stack.query("SELECT outcome, skip_reason FROM pacs_instance WHERE sop_instance_uid = %s", (exports[1][3],))
    assert rows == [("skipped", "our own result coming back (loop guard)")]
    stack.manage("dicom_tick")
    assert len(predictions_of(stack, study_uid)) == 1


def test_it_loses_nothing_when_the_listener_is_killed_mid_association(stack, orthanc):
    study_uid = new_study_uid()
    (orthanc_id,) = [orthanc.upload(to_bytes(chest(study_uid=study_uid, patient_id="KILL-1")))["ID"]]
    listener = stack.processes["listener"]
    os.kill(listener.pid, signal.SIGSTOP)  # the association opens and hangs...
    push = {}
    thread = threading.Thread(target=lambda: push.update(response=orthanc.store_to("pneumoweb", [orthanc_id])))
    thread.start()
    try:
        time.sleep(1.5)  # Orthanc has connected and sent its association request, unanswered
    finally:
        stack.kill_listener()  # ...and the listener dies before it answered
    thread.join(timeout=90)
    assert push["response"].status_code != 200  # the sender knows it failed
    assert not stack.query("SELECT 1 FROM pacs_instance i JOIN pacs_imagingstudy m ON m.id = i.imaging_study_id "
                           "WHERE m.study_instance_uid = %s", (study_uid,))
    stack.start_listener()
    assert orthanc.store_to("pneumoweb", [orthanc_id]).status_code == 200  # the sender's retry
    wait_until(lambda: [row[1] for row in predictions_of(stack, study_uid)] == ["succeeded"], 180,
               "the retried study's prediction", interval=0.5, explain=stack.explain)



# --- the DICOMweb clients hospitals use, on their default settings (issue 28) -----------------------


def wait_for_a_prediction(stack, study_uid, timeout=180):
    wait_until(lambda: [row[1] for row in predictions_of(stack, study_uid)] == ["succeeded"], timeout,
               f"one succeeded prediction of {study_uid}", interval=0.5, explain=stack.explain)
    return predictions_of(stack, study_uid)


def test_orthancs_own_stow_client_gets_a_study_through_on_its_default_settings(stack, orthanc):
    study_uid = new_study_uid()
    ident = orthanc.upload(to_bytes(chest(study_uid=study_uid, patient_id="ORTH-STOW", age="052Y")))["ID"]
    response = orthanc.http.post(f"{orthanc.http_url}/dicom-web/servers/pneumoweb/stow",
                                 json={"Resources": [ident]}, timeout=120)
    assert response.status_code == 200, (response.text, orthanc.log_path.read_text(errors="replace")[-3000:])
    [(_, status, _, age)] = wait_for_a_prediction(stack, study_uid)
    assert status == "succeeded" and float(age) == 52


def test_dicomweb_clients_store_instances_gets_through(stack, orthanc):
    from dicomweb_client import DICOMwebClient

    client = DICOMwebClient(url=stack.url("/dicom-web"), headers={"Authorization": f"Token {stack.token('sender')}"})
    study_uid = new_study_uid()
    frontal = chest(study_uid=study_uid, patient_id="DWC-1", age="061Y")
    answer = client.store_instances([frontal])
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == frontal.SOPInstanceUID
    assert "FailedSOPSequence" not in answer
    wait_for_a_prediction(stack, study_uid)


def test_curl_asking_for_dicom_json_gets_it(stack, tmp_path):
    body, content_type = multipart_related(to_bytes(chest(patient_id="CURL-1")))
    (tmp_path / "body").write_bytes(body)
    out = subprocess.run(
        ["curl", "-sS", "-o", str(tmp_path / "answer"), "-w", "%{http_code} %{content_type}", "-X", "POST",
         "-H", "Accept: application/dicom+json", "-H", f"Content-Type: {content_type}",
         "-H", f"Authorization: Token {stack.token('sender')}", "--data-binary", f"@{tmp_path / 'body'}",
         stack.url("/dicom-web/studies")], capture_output=True, text=True, timeout=60, check=True)
    code, answered = out.stdout.split(" ", 1)
    assert code == "200" and answered.startswith("application/dicom+json")
    chunked = subprocess.run(  # the same body sent chunked, as a streaming client sends it
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "Transfer-Encoding: chunked",
         "-H", "Accept: application/dicom+json", "-H", f"Content-Type: {content_type}",
         "-H", f"Authorization: Token {stack.token('sender')}", "--data-binary", f"@{tmp_path / 'body'}",
         stack.url("/dicom-web/studies")], capture_output=True, text=True, timeout=60, check=True)
    assert chunked.stdout == "200"  # the same instance again: acknowledged, not stored twice


def test_dcmtks_dcmsend_sends_a_film_in_each_compressed_syntax_and_each_is_assessed(stack, orthanc, tmp_path,
                                                                                      listener_port):
    from ..pacs.test_compressed import FILMS, renamed

    studies = []
    for path in FILMS:
        dataset = renamed(path)
        dataset.PatientID = f"DCMSEND-{path.stem}"
        dataset.save_as(tmp_path / path.name, enforce_file_format=True)
        studies.append(dataset.StudyInstanceUID)
    # dcmsend on its defaults but --decompress-never: each file goes in its own compressed syntax, as from a
    # PACS that cannot decompress (dcmtk's storescu would decompress what it can, and has no JPEG 2000 codec).
    out = subprocess.run(["dcmsend", "--decompress-never", "-aet", "ORTHANC", "-aec", "PNEUMOWEB", "127.0.0.1",
                          str(listener_port), *sorted(str(p) for p in tmp_path.glob("*.dcm"))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    for study_uid in studies:
        wait_for_a_prediction(stack, study_uid)


def test_dcmsend_hears_why_a_damaged_film_is_not_assessed(stack, orthanc, tmp_path, listener_port):
    from ..pacs.test_compressed import FILMS, renamed
    from ..pacs.test_listener import pydicom_fragments

    dataset = renamed(next(path for path in FILMS if path.stem == "jpeg-lossless-sv1"))
    dataset.PatientID = "DCMSEND-DAMAGED"
    dataset.PixelData = pydicom_fragments(dataset)
    dataset.save_as(tmp_path / "damaged.dcm", enforce_file_format=True)
    out = subprocess.run(["dcmsend", "-d", "--decompress-never", "-aet", "ORTHANC", "-aec", "PNEUMOWEB", "127.0.0.1",
                          str(listener_port), str(tmp_path / "damaged.dcm")], capture_output=True, text=True, timeout=60)
    said = out.stdout + out.stderr
    assert "0xb000: Warning" in said and "not assessed: its image could not be read or decoded" in said, said
    # And the study's SR goes back to the PACS saying so, with the reason.
    wait_until(lambda: stack.query(
        "SELECT e.status FROM pacs_export e JOIN pacs_instance i ON i.id = e.instance_id "
        "WHERE i.sop_instance_uid = %s AND e.prediction_id IS NULL", (dataset.SOPInstanceUID,)) == [("sent",)],
        120, "the not-assessed SR to be sent", interval=0.5, explain=stack.explain)
    found = orthanc.find("Instance", {"StudyInstanceUID": dataset.StudyInstanceUID, "Modality": "SR"}, expand=True)
    assert len(found) == 1, found
    content = orthanc.get(f"/instances/{found[0]['ID']}/simplified-tags")
    assert "Not assessed: the image could not be read" in str(content)


# dcmtk's storescu proposes uncompressed syntaxes only unless told which compressed one to offer (and cannot
# decompress a file itself), so a PACS-side operator passes the file's own: these are its flags for each.
STORESCU_PROPOSE = {"jpeg-baseline": "-xy", "jpeg-extended": "-xx", "jpeg-lossless-sv1": "-xs",
                    "jpeg-ls-lossless": "-xt", "jpeg-ls-near-lossless": "-xu", "jpeg-2000-lossless": "-xv",
                    "jpeg-2000": "-xw", "rle": "-xr"}


def test_dcmtks_storescu_sends_on_its_defaults_and_each_compressed_syntax_it_can_propose(stack, orthanc, tmp_path,
                                                                                         listener_port):
    from ..pacs.test_compressed import FILMS, renamed

    plain = chest(patient_id="STORESCU-PLAIN", age="050Y")
    plain.save_as(tmp_path / "plain.dcm", enforce_file_format=True)
    sends = [("plain.dcm", [], plain.StudyInstanceUID)]
    for path in FILMS:
        if path.stem in ("jpeg-lossless",):  # process 14 (not SV1): storescu has no flag to propose it
            continue
        dataset = renamed(path)
        dataset.PatientID = f"STORESCU-{path.stem}"
        dataset.save_as(tmp_path / path.name, enforce_file_format=True)
        sends.append((path.name, [STORESCU_PROPOSE[path.stem]], dataset.StudyInstanceUID))
    for name, flags, _ in sends:
        out = subprocess.run(["storescu", *flags, "-aet", "ORTHANC", "-aec", "PNEUMOWEB", "127.0.0.1",
                              str(listener_port), str(tmp_path / name)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (name, out.stdout + out.stderr)
    for _, _, study_uid in sends:
        wait_for_a_prediction(stack, study_uid)
