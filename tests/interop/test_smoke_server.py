"""The daemon starts, answers C-ECHO to a known AE and stores a file."""

from pydicom.data import get_testdata_file

from tests.helpers import dcmtk


def test_echo_and_store(server, tmp_path):
    r = dcmtk("echoscu", "-aet", "STORESCU", "-aec", server.ae_title, "127.0.0.1", str(server.port))
    assert r.returncode == 0, r.stderr
    f = get_testdata_file("CT_small.dcm", download=False)
    r = dcmtk(
        "storescu", "-aet", "STORESCU", "-aec", server.ae_title, "127.0.0.1", str(server.port), f
    )
    assert r.returncode == 0, r.stderr
