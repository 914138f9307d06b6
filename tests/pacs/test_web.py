"""DICOMweb against Orthanc's plugin with basic authentication: QIDO gives the C-FIND rows, wildcard names
survive the plugin's missing percent-decoding, WADO-RS lands in the store and the index, 401 is told apart."""

from __future__ import annotations

import pytest

from tests.pacs.conftest import dimse_node, web_node
from viewer.pacs import service, web
from viewer.pacs import testserver as orthanc
from viewer.pacs.failures import Failure, PacsError
from viewer.pacs.query import StudyQuery
from viewer.pacs.retrieve import RetrieveProgress


def test_qido_test_succeeds_with_the_right_password(pacs) -> None:
    assert "QIDO-RS query to" in service.test(web_node(), orthanc.PASSWORD)


def test_wrong_password_is_401(pacs) -> None:
    with pytest.raises(PacsError) as info:
        service.test(web_node(), "wrong")
    assert info.value.kind is Failure.UNAUTHORIZED and "HTTP 401" in str(info.value)
    assert "wrong" not in str(info.value)


def test_closed_port_is_refused(pacs) -> None:
    with pytest.raises(PacsError) as info:
        service.test(web_node(web_url="http://127.0.0.1:8044/dicom-web"), orthanc.PASSWORD)
    assert info.value.kind is Failure.REFUSED


@pytest.mark.parametrize(
    "query",
    [
        StudyQuery(),
        StudyQuery(patient_id="PACS-A"),
        StudyQuery(patient_name="Pacs^Al*"),
        StudyQuery(patient_name="pacs*"),
        StudyQuery(date_from="20240301", date_to="20240331"),
        StudyQuery(accession="ACC-B"),
        StudyQuery(modality="MR"),
    ],
    ids=["all", "id", "name-with-caret", "name-case", "dates", "accession", "modality"],
)
def test_qido_gives_the_same_rows_as_c_find(pacs, query: StudyQuery) -> None:
    by_dimse = service.find_studies(dimse_node(), query).rows
    by_web = service.find_studies(web_node(), query, secret=orthanc.PASSWORD).rows
    assert by_web and sorted(by_web, key=lambda r: r.study_uid) == sorted(by_dimse, key=lambda r: r.study_uid)


def test_qido_cap_and_series(pacs) -> None:
    capped = service.find_studies(web_node(), StudyQuery(), limit=2, secret=orthanc.PASSWORD)
    assert len(capped.rows) == 2 and capped.capped
    series = service.find_series(web_node(), pacs.studies["alpha"], secret=orthanc.PASSWORD).rows
    assert series == service.find_series(dimse_node(), pacs.studies["alpha"]).rows


def test_query_values_are_sent_without_percent_encoding() -> None:
    assert web._query_string({"PatientName": "Doe^J*", "StudyDate": "20240101-"}) == (
        "PatientName=Doe?J*&StudyDate=20240101-"
    )
    assert web._pattern("Doe^J*", case_sensitive=False).fullmatch("DOE^JOHN")
    assert not web._pattern("Doe^J*", case_sensitive=False).fullmatch("DOE_JOHN")


def test_wado_retrieves_a_series_into_the_store_and_index(pacs, store) -> None:
    from tests.pacs.test_dimse import _check_arrived

    seen: list[RetrieveProgress] = []
    result = service.retrieve(
        web_node(),
        pacs.studies["alpha"],
        pacs.series["alpha2"],
        secret=orthanc.PASSWORD,
        store=store,
        progress=seen.append,
    )
    _check_arrived(pacs, result, [pacs.series["alpha2"]])
    assert result.protocol == "WADO-RS" and [p.remaining for p in seen] == [3, 2, 1, 0]


def test_wado_cancel_and_401(pacs, store) -> None:
    result = service.retrieve(
        web_node(), pacs.studies["alpha"], secret=orthanc.PASSWORD, store=store, cancel=lambda: True
    )
    assert result.cancelled and not result.files
    with pytest.raises(PacsError) as info:
        service.retrieve(web_node(), pacs.studies["alpha"], secret="wrong", store=store)
    assert info.value.kind is Failure.UNAUTHORIZED


@pytest.mark.parametrize(
    ("code", "kind"), [(401, Failure.UNAUTHORIZED), (403, Failure.FORBIDDEN), (500, Failure.HTTP)]
)
def test_http_errors_are_told_apart(code: int, kind: Failure) -> None:
    import requests

    rsp = requests.Response()
    rsp.status_code, rsp.reason = code, "x"
    err = web._http_error(web_node(), "Cannot query", requests.HTTPError(response=rsp))
    assert err.kind is kind and f"HTTP {code}" in str(err)
