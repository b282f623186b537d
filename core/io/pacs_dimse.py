"""The DIMSE side of `core.io.pacs`: C-FIND (study root), C-GET or C-MOVE, C-STORE through pynetdicom.

C-GET needs no inbound connection (the images come back on our association); C-MOVE asks the PACS to
send them to our AE title on `move_port`, where a storage service runs for the length of the retrieve
(the PACS must know our AE title, host and port). Time-outs: the settings' `timeout_s` for connecting,
association and each DIMSE message.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from gemini_cmr.core.errors import Cancelled, PacsError
from gemini_cmr.core.io.dicom_files import quiet_pydicom
from gemini_cmr.core.io.pacs import (
    INSTANCE_FIELDS,
    SERIES_FIELDS,
    STUDY_FIELDS,
    PacsClient,
    SeriesInfo,
    _partial,
    _read_upload,
    instance_fields,
    judge_series,
    series_info,
    study_info,
    verify_stored,
)

log = logging.getLogger(__name__)

_PENDING = (0xFF00, 0xFF01)
_WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)


def _storage_classes() -> list[str]:
    from pynetdicom.sop_class import (
        EnhancedMRImageStorage,
        MRImageStorage,
        SecondaryCaptureImageStorage,
        SegmentationStorage,
    )

    return [MRImageStorage, EnhancedMRImageStorage, SegmentationStorage, SecondaryCaptureImageStorage]


def _transfer_syntaxes() -> list[str]:
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        JPEG2000Lossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        RLELossless,
    )

    return [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless, JPEGLosslessSV1, JPEG2000Lossless,
            RLELossless, DeflatedExplicitVRLittleEndian]


class DimseClient(PacsClient):
    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.server.calling_ae)
        t = self.server.timeout_s
        ae.connection_timeout = t
        ae.acse_timeout = t
        ae.dimse_timeout = t
        ae.network_timeout = t
        return ae

    @contextlib.contextmanager
    def _association(self, ae, what: str, **kwargs) -> Iterator:
        host, port = self.server.host_port
        assoc = ae.associate(host, port, ae_title=self.server.called_ae, **kwargs)
        if not assoc.is_established:
            if assoc.is_rejected:
                raise PacsError(f"the DICOM node at {self.server.display} rejected the association from "
                                f"{self.server.calling_ae} while {what} (check both AE titles and that the PACS "
                                "knows ours)")
            raise PacsError(f"cannot reach the DICOM node at {self.server.display} (no association while {what}; "
                            "check the address and that the server is running)")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _find(self, level: str, keys: dict[str, str], fields: Sequence[str], what: str) -> list[dict]:
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as model

        ae = self._ae()
        ae.add_requested_context(model)
        query = Dataset()
        query.QueryRetrieveLevel = level
        for k in fields:
            setattr(query, k, "")
        for k, v in keys.items():
            setattr(query, k, v)
        out = []
        with self._association(ae, what) as assoc:
            for status, identifier in assoc.send_c_find(query, model):
                if status is None or not hasattr(status, "Status"):
                    raise PacsError(f"the DICOM node at {self.server.display} did not answer in time while {what}")
                if status.Status in _PENDING:
                    if identifier is not None:
                        with quiet_pydicom():
                            out.append({k: identifier.get(k) for k in (*fields, *keys) if k in identifier})
                elif status.Status != 0x0000:
                    raise PacsError(f"the DICOM node at {self.server.display} refused the query while {what} "
                                    f"(status 0x{status.Status:04X})")
        return out

    def find_studies(self, patient_id="", patient_name="", study_date="", study_uid="", limit=200):
        keys = {k: v for k, v in (("PatientID", patient_id), ("PatientName", patient_name),
                                  ("StudyDate", study_date), ("StudyInstanceUID", study_uid)) if v}
        found = self._find("STUDY", keys, STUDY_FIELDS, "searching for studies")
        return [study_info(ds) for ds in found[:limit]]

    def find_series(self, study_uid, judge=True):
        found = self._find("SERIES", {"StudyInstanceUID": study_uid}, SERIES_FIELDS,
                           f"listing the series of study {study_uid}")
        series = [series_info(ds, study_uid) for ds in found]
        if judge:
            for s in series:
                instances = None
                if not s.modality or s.modality.upper() == "MR":
                    found = self._find("IMAGE", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": s.series_uid},
                                       ("SeriesInstanceUID", *INSTANCE_FIELDS),
                                       f"reading the headers of series {s.series_uid}")
                    instances = [instance_fields(ds) for ds in found]
                    if s.n_instances is None:
                        s.n_instances = len(instances)
                judge_series(s, instances)
        return series

    def retrieve_series(self, study_uid, series_uid, folder: Path, progress, cancel, expected):
        from pynetdicom import build_role, evt
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as get_model
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as move_model

        received = {"n": 0, "error": None}
        lock = threading.Lock()

        def on_store(event):
            if cancel():
                return 0xA700  # refused: the retrieve stops
            try:
                ds = event.dataset
                ds.file_meta = event.file_meta
                with lock:
                    n = received["n"]
                    received["n"] += 1
                ds.save_as(folder / f"IM_{n:05d}.dcm", enforce_file_format=True)
            except OSError as exc:
                received["error"] = exc
                return 0xA700
            progress(received["n"] / expected if expected else 0.5, f"retrieved {received['n']} images")
            return 0x0000

        query = Dataset()
        query.QueryRetrieveLevel = "SERIES"
        query.StudyInstanceUID = study_uid
        query.SeriesInstanceUID = series_uid
        ae = self._ae()
        handlers = [(evt.EVT_C_STORE, on_store)]
        server = None
        if self.server.retrieve == "move":
            ae.add_requested_context(move_model)
            for cls in _storage_classes():
                ae.add_supported_context(cls, _transfer_syntaxes())
            try:
                server = ae.start_server(("", self.server.move_port), block=False, evt_handlers=handlers)
            except OSError as exc:
                raise PacsError(f"cannot listen on port {self.server.move_port} for C-MOVE ({exc.strerror})") from None
            kwargs, model = {}, move_model
        else:
            ae.add_requested_context(get_model)
            roles = []
            for cls in _storage_classes():
                ae.add_requested_context(cls, _transfer_syntaxes())
                roles.append(build_role(cls, scp_role=True))
            kwargs, model = {"ext_neg": roles, "evt_handlers": handlers}, get_model
        what = f"retrieving series {series_uid}"
        final = None
        try:
            with self._association(ae, what, **kwargs) as assoc:
                responses = (assoc.send_c_move(query, self.server.calling_ae, model) if server is not None
                             else assoc.send_c_get(query, model))
                for status, _ in responses:
                    if cancel():
                        assoc.abort()
                        raise Cancelled("retrieve cancelled")
                    if status is None or not hasattr(status, "Status"):
                        break
                    final = status
                    if status.Status not in _PENDING:
                        break
        finally:
            if server is not None:
                server.shutdown()
        if received["error"] is not None:
            exc = received["error"]
            raise PacsError(f"cannot write a retrieved image ({exc.strerror})", getattr(exc, "filename", None))
        n = received["n"]
        if final is None:
            raise PacsError(f"the retrieve of series {series_uid} from {self.server.display} was cut off after {n} "
                            "images (no final answer); nothing was kept")
        if final.Status not in (0x0000, *_WARNINGS):
            raise PacsError(f"the DICOM node at {self.server.display} failed {what} after {n} images "
                            f"(status 0x{final.Status:04X}); nothing was kept")
        return n

    def store(self, paths, progress, cancel):
        datasets = [(p, _read_upload(p)) for p in paths]
        ae = self._ae()
        contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets})
        if len(contexts) > 128:
            raise PacsError("too many kinds of files for one association (more than 128)")
        for cls, syntax in contexts:
            ae.add_requested_context(cls, [syntax])
        stored: list[str] = []
        by_series: dict[str, int] = {}
        with self._association(ae, "storing files") as assoc:
            for i, (path, ds) in enumerate(datasets):
                if cancel():
                    raise Cancelled(_partial("upload cancelled", stored, by_series, self.server))
                progress(i / len(datasets), f"sending {i + 1} of {len(datasets)} files")
                try:
                    status = assoc.send_c_store(ds)
                except (ValueError, RuntimeError) as exc:
                    raise PacsError(_partial(f"upload rejected: {path.name}: {' '.join(str(exc).split())[:80]}",
                                             stored, by_series, self.server)) from None
                code = getattr(status, "Status", None)
                if code is None or code not in (0x0000, *_WARNINGS):
                    why = "no answer" if code is None else f"status 0x{code:04X}"
                    raise PacsError(_partial(f"upload rejected: {path.name} ({why})", stored, by_series, self.server))
                stored.append(str(ds.SOPInstanceUID))
                by_series[str(ds.SeriesInstanceUID)] = by_series.get(str(ds.SeriesInstanceUID), 0) + 1
        return verify_stored(self, paths, progress)

    def instances(self, study_uid, series_uid):
        found = self._find("IMAGE", {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid},
                           ("SOPInstanceUID",), f"checking series {series_uid}")
        return {str(ds.get("SOPInstanceUID", "")) for ds in found}


__all__ = ["DimseClient", "SeriesInfo"]
