"""Bad input never loses a record silently: each problem is a quarantine row or a SourceError.

Every test builds its broken input in ``tmp_path`` and asserts exact counts: the good records
and the quarantine reasons with their counts.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import shutil
import tempfile
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from llmstack_dagster.core.curation.ingest import ingest_domain
from llmstack_dagster.core.curation.readers import RawRecord, SourceError, read_source
from llmstack_dagster.core.curation.sources import (
    DomainConfig,
    JsonlSource,
    ParquetSource,
    SourceBase,
    TextDirSource,
    WarcSource,
)
from llmstack_dagster.core.storage import iter_shard_tables

# --- helpers -----------------------------------------------------------------------------


def read_all(source: SourceBase) -> tuple[list[RawRecord], list[RawRecord]]:
    """(good records, quarantine rows) of a source, in file order."""
    rows = list(read_source(source))
    return [r for r in rows if r.error is None], [r for r in rows if r.error is not None]


def reasons(bad: list[RawRecord]) -> dict[str, int]:
    return dict(Counter(r.error for r in bad))


def jsonl_lines(n: int) -> list[bytes]:
    return [
        json.dumps({"id": f"d{i}", "text": f"document {i} " + "word " * (i % 9 + 3)}).encode()
        + b"\n"
        for i in range(n)
    ]


def complete_lines(data: bytes) -> int:
    return data.count(b"\n")


def jsonl(name: str, path: Path | str) -> JsonlSource:
    return JsonlSource(name=name, paths=[str(path)])


SENTENCES = [
    "The river valley was settled by farmers who grew barley and kept bees on the slopes.",
    "Each spring the meltwater carried silt down from the mountains and renewed the fields.",
    "Travellers described the market town as busy, with stalls of wool, salt and pottery.",
    "Over the centuries the old stone bridge was rebuilt three times after great floods.",
    "Local historians still argue about when the first mill was built beside the weir.",
    "The parish records list weddings, harvest festivals and the arrival of the railway.",
    "Children walked several miles to the schoolhouse, carrying lunch in tin boxes.",
    "In the autumn the orchards were heavy with apples that were pressed into cider.",
]


def html_page(i: int) -> bytes:
    paragraphs = "".join(
        f"<p>{SENTENCES[(i + k) % len(SENTENCES)]} "
        f"{SENTENCES[(i + 3 * k + 1) % len(SENTENCES)]} This is page {i}, paragraph {k}.</p>"
        for k in range(5)
    )
    return (
        f"<html><head><title>Valley history {i}</title></head><body><nav>Home | About</nav>"
        f"<article><h1>Valley history, part {i}</h1>{paragraphs}</article>"
        "<footer>Copyright the valley society</footer></body></html>"
    ).encode()


def warc_records(n: int, *, gz: bool) -> list[bytes]:
    """``n`` real WARC response records with HTML, each written on its own (a gzip member)."""
    records = []
    for i in range(n):
        out = io.BytesIO()
        writer = WARCWriter(out, gzip=gz)
        headers = StatusAndHeaders(
            "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
        )
        record = writer.create_warc_record(
            f"https://valley.example/history/{i}",
            "response",
            payload=io.BytesIO(html_page(i)),
            http_headers=headers,
        )
        writer.write_record(record)
        records.append(out.getvalue())
    return records


def inflate_length(record: bytes, extra: int) -> bytes:
    """The record with its WARC Content-Length made ``extra`` bytes too large."""
    head, sep, block = record.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for k, line in enumerate(lines):
        if line.lower().startswith(b"content-length:"):
            lines[k] = b"Content-Length: %d" % (int(line.split(b":")[1]) + extra)
    return b"\r\n".join(lines) + sep + block


def warc(name: str, path: Path) -> WarcSource:
    return WarcSource(name=name, paths=[str(path)])


# --- zstd and gzip -----------------------------------------------------------------------


def test_zstd_cut_anywhere_in_one_frame_gives_complete_lines_and_one_truncated_row(
    tmp_path: Path,
) -> None:
    lines = jsonl_lines(30)
    plain = b"".join(lines)
    frame = zstandard.ZstdCompressor(level=3).compress(plain)
    path = tmp_path / "cut.jsonl.zst"
    cuts = range(1, len(frame), 7)
    assert len(cuts) > 20
    for cut in cuts:
        path.write_bytes(frame[:cut])
        good, bad = read_all(jsonl("zst", path))
        expected = complete_lines(
            zstandard.ZstdDecompressor().decompressobj().decompress(frame[:cut])
        )
        assert len(good) == expected < len(lines), cut
        assert [r.record for r in good] == [json.loads(x) for x in lines[:expected]]
        assert reasons(bad) == {"truncated_zstd": 1}, cut
        assert bad[0].locator == f"after-line:{expected}"
        assert f"byte {cut}" in bad[0].detail and str(path) in bad[0].detail
    path.write_bytes(frame)
    good, bad = read_all(jsonl("zst", path))
    assert len(good) == 30 and bad == []


def test_zstd_cut_in_a_multi_block_frame_keeps_the_lines_before_the_cut(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": i, "text": f"{i * 7919 % 100003} {i * 104729 % 1000003}"}).encode()
        + b"\n"
        for i in range(20000)
    ]
    frame = zstandard.ZstdCompressor(level=1).compress(b"".join(lines))
    path = tmp_path / "big.jsonl.zst"
    for cut in range(len(frame) // 4, len(frame), len(frame) // 8):
        path.write_bytes(frame[:cut])
        good, bad = read_all(jsonl("big", path))
        expected = complete_lines(
            zstandard.ZstdDecompressor().decompressobj().decompress(frame[:cut])
        )
        assert 0 < len(good) == expected < len(lines), cut
        assert good[-1].record == json.loads(lines[expected - 1])
        assert reasons(bad) == {"truncated_zstd": 1} and bad[0].locator == f"after-line:{expected}"


def test_zstd_two_frames_cut_anywhere(tmp_path: Path) -> None:
    lines = jsonl_lines(24)
    first = zstandard.ZstdCompressor().compress(b"".join(lines[:12]))
    second = zstandard.ZstdCompressor().compress(b"".join(lines[12:]))
    data = first + second
    path = tmp_path / "two.jsonl.zst"
    for cut in [*range(1, len(data), 7), len(first) - 1, len(first), len(first) + 1]:
        path.write_bytes(data[:cut])
        good, bad = read_all(jsonl("zst2", path))
        if cut == len(first):  # exactly between frames: indistinguishable from a shorter file
            assert len(good) == 12 and bad == []
            continue
        out = zstandard.ZstdDecompressor().decompressobj().decompress(data[: min(cut, len(first))])
        if cut > len(first):
            out += zstandard.ZstdDecompressor().decompressobj().decompress(data[len(first) : cut])
        assert len(good) == complete_lines(out) < 24, cut
        assert reasons(bad) == {"truncated_zstd": 1}, cut
        assert bad[0].locator == f"after-line:{len(good)}"


def test_complete_multi_frame_zstd_reads_fully(tmp_path: Path) -> None:
    lines = jsonl_lines(45)
    frames = [
        zstandard.ZstdCompressor(write_content_size=False).compress(b"".join(lines[:10])),
        zstandard.ZstdCompressor(level=9).compress(b"".join(lines[10:30])),
        zstandard.ZstdCompressor().compress(b""),
        zstandard.ZstdCompressor().compress(b"".join(lines[30:])),
    ]
    path = tmp_path / "multi.jsonl.zst"
    path.write_bytes(b"".join(frames))
    good, bad = read_all(jsonl("multi", path))
    assert [r.record["id"] for r in good] == [f"d{i}" for i in range(45)] and bad == []
    assert good[-1].locator == "line:45"


def test_gzip_cut_anywhere_never_emits_a_partial_line(tmp_path: Path) -> None:
    lines = jsonl_lines(40)
    data = gzip.compress(b"".join(lines))
    path = tmp_path / "cut.jsonl.gz"
    for cut in range(1, len(data), 11):
        path.write_bytes(data[:cut])
        good, bad = read_all(jsonl("gz", path))
        out = zlib.decompressobj(31).decompress(data[:cut])
        assert len(good) == complete_lines(out) < 40, cut
        assert reasons(bad) == {"truncated_gzip": 1}, cut  # no malformed_json from a partial line
        assert bad[0].locator == f"after-line:{len(good)}"
    path.write_bytes(data + gzip.compress(b"".join(jsonl_lines(3))))  # a second member
    good, bad = read_all(jsonl("gz", path))
    assert len(good) == 43 and bad == []


# --- WARC --------------------------------------------------------------------------------


def test_warc_gz_cut_inside_a_record_is_a_truncated_record(tmp_path: Path) -> None:
    members = warc_records(4, gz=True)
    data = b"".join(members)
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data)
    good, bad = read_all(warc("w", path))
    assert len(good) == 4 and bad == []
    assert [r.record["url"] for r in good] == [
        f"https://valley.example/history/{i}" for i in range(4)
    ]
    assert all("This is page" in r.record["text"] for r in good)
    start = 0
    for index, member in enumerate(members):
        for cut in range(start + 1, start + len(member), 13):
            path.write_bytes(data[:cut])
            good, bad = read_all(warc("w", path))
            if reasons(bad) == {"truncated_gzip": 1}:  # cut in the member's last bytes only:
                assert cut > start + len(member) - 60, cut  # the record itself is complete
                assert len(good) == index + 1
                continue
            assert len(good) == index, cut
            assert reasons(bad) == {"truncated_record": 1}, cut
            assert bad[0].locator == f"byte:{start}" and str(path) in bad[0].detail
        start += len(member)


def test_warc_gz_inflated_content_length_is_reported_and_later_records_read(
    tmp_path: Path,
) -> None:
    plain = warc_records(4, gz=False)
    plain[1] = inflate_length(plain[1], 700)
    members = [gzip.compress(r) for r in plain]
    path = tmp_path / "inflated.warc.gz"
    path.write_bytes(b"".join(members))
    good, bad = read_all(warc("w", path))
    assert [r.record["url"][-1] for r in good] == ["0", "2", "3"]
    assert reasons(bad) == {"invalid_record_length": 1}
    assert bad[0].locator == f"byte:{len(members[0])}"
    plain[3] = inflate_length(plain[3], 50)  # the last record: its member ends first
    path.write_bytes(b"".join(gzip.compress(r) for r in plain))
    good, bad = read_all(warc("w", path))
    assert [r.record["url"][-1] for r in good] == ["0", "2"]
    assert reasons(bad) == {"invalid_record_length": 2}


@pytest.mark.parametrize("extra", [700, 10**12])
def test_plain_warc_inflated_content_length_resyncs_at_the_next_header(
    tmp_path: Path, extra: int
) -> None:
    plain = warc_records(4, gz=False)
    plain[1] = inflate_length(plain[1], extra)
    path = tmp_path / "inflated.warc"
    path.write_bytes(b"".join(plain))
    good, bad = read_all(warc("w", path))
    assert [r.record["url"][-1] for r in good] == ["0", "2", "3"]
    assert reasons(bad) == {"invalid_record_length": 1}
    assert bad[0].locator == f"byte:{len(plain[0])}"


def test_plain_warc_cut_inside_the_last_record(tmp_path: Path) -> None:
    plain = warc_records(3, gz=False)
    data = b"".join(plain)
    path = tmp_path / "cut.warc"
    path.write_bytes(data[: len(data) - 200])
    good, bad = read_all(warc("w", path))
    assert len(good) == 2 and reasons(bad) == {"truncated_record": 1}
    assert bad[0].locator == f"byte:{len(plain[0]) + len(plain[1])}"


def test_warc_gz_garbage_between_records_is_skipped_and_counted(tmp_path: Path) -> None:
    members = warc_records(4, gz=True)
    junk = b"NOT A GZIP MEMBER " * 5
    path = tmp_path / "garbage.warc.gz"
    path.write_bytes(b"".join(members[:2]) + junk + b"".join(members[2:]) + b"tail junk")
    good, bad = read_all(warc("w", path))
    assert [r.record["url"][-1] for r in good] == ["0", "1", "2", "3"]
    assert reasons(bad) == {"garbage_between_records": 2}
    offset = len(members[0]) + len(members[1])
    assert bad[0].locator == f"byte:{offset}" and f"{len(junk)} bytes" in bad[0].detail
    assert "9 bytes" in bad[1].detail


def test_plain_warc_garbage_between_records_is_skipped_and_counted(tmp_path: Path) -> None:
    plain = warc_records(4, gz=False)
    junk = b"this line is not a WARC record\r\nnor is this one\r\n"
    path = tmp_path / "garbage.warc"
    path.write_bytes(plain[0] + junk + b"".join(plain[1:]))
    good, bad = read_all(warc("w", path))
    assert [r.record["url"][-1] for r in good] == ["0", "1", "2", "3"]
    assert reasons(bad) == {"garbage_between_records": 1}
    assert bad[0].locator == f"byte:{len(plain[0])}" and f"{len(junk)} bytes" in bad[0].detail


def test_warc_gz_corrupt_member_is_one_row_and_later_records_read(tmp_path: Path) -> None:
    members = warc_records(4, gz=True)
    broken = bytearray(members[1])
    broken[3] = 0xFF  # reserved gzip flag bits: zlib refuses the member
    path = tmp_path / "corrupt.warc.gz"
    path.write_bytes(members[0] + bytes(broken) + b"".join(members[2:]))
    good, bad = read_all(warc("w", path))
    assert [r.record["url"][-1] for r in good] == ["0", "2", "3"]
    assert reasons(bad) == {"corrupt_gzip": 1} and bad[0].locator == f"byte:{len(members[0])}"


def test_plain_warc_deflated_content_length_resyncs(tmp_path: Path) -> None:
    plain = warc_records(4, gz=False)
    plain[2] = inflate_length(plain[2], -100)
    path = tmp_path / "short.warc"
    path.write_bytes(b"".join(plain))
    good, bad = read_all(warc("w", path))
    assert [r.record["url"][-1] for r in good] == ["0", "1", "3"]
    assert reasons(bad) == {"invalid_record_length": 1}


def test_whole_file_gzip_warc_reads_every_record(tmp_path: Path) -> None:
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(gzip.compress(b"".join(warc_records(3, gz=False))))
    good, bad = read_all(warc("w", path))
    assert len(good) == 3 and bad == []


# --- Parquet -----------------------------------------------------------------------------


def test_corrupt_parquet_is_quarantined_beside_good_files(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": list(range(10)), "text": ["t"] * 10}), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 this is not parquet at all")
    good, bad = read_all(ParquetSource(name="pq", paths=[str(tmp_path / "*.parquet")]))
    assert len(good) == 10 and reasons(bad) == {"corrupt_parquet": 1}
    assert bad[0].uri == str(tmp_path / "b.parquet") and "magic" in bad[0].detail
    with pytest.raises(SourceError, match=r"source 'only_bad'.*b\.parquet.*corrupt_parquet"):
        read_all(ParquetSource(name="only_bad", paths=[str(tmp_path / "b.parquet")]))


def test_parquet_bad_row_group_is_one_row_with_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    table = pa.table({"id": [f"r{i}" for i in range(30)], "text": [f"row {i}" for i in range(30)]})
    pq.write_table(table, path, row_group_size=10)
    column = pq.ParquetFile(path).metadata.row_group(1).column(1)
    offset = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 24] = b"\xff" * 24
    path.write_bytes(bytes(data))
    good, bad = read_all(ParquetSource(name="pq", paths=[str(path)]))
    assert [r.record["id"] for r in good] == [f"r{i}" for i in [*range(10), *range(20, 30)]]
    assert [r.locator for r in good][10] == "row:20"
    assert reasons(bad) == {"corrupt_parquet": 1} and bad[0].locator == "row:10"
    assert "row group 1" in bad[0].detail and str(path) in bad[0].detail


def test_parquet_date_columns_read_as_dates(tmp_path: Path) -> None:
    days = [dt.date(2021, 3, 4), dt.date(1999, 12, 31)]
    table = pa.table(
        {
            "text": ["a", "b"],
            "day": pa.array(days, pa.date32()),
            "day64": pa.array(days, pa.date64()),
        }
    )
    pq.write_table(table, tmp_path / "dates.parquet")
    good, bad = read_all(ParquetSource(name="dates", paths=[str(tmp_path / "dates.parquet")]))
    assert bad == [] and [r.record["day"] for r in good] == days
    assert [r.record["day64"] for r in good] == days


def test_remote_parquet_and_jsonl_through_fsspec() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]}), buffer)
    fs.pipe("/reliability/remote.parquet", buffer.getvalue())
    fs.pipe("/reliability/remote.jsonl", b"".join(jsonl_lines(4)))
    fs.pipe("/reliability/bad.parquet", b"not parquet")
    try:
        good, bad = read_all(ParquetSource(name="mem", paths=["memory://reliability/*.parquet"]))
        assert [r.record["id"] for r in good] == ["a", "b", "c"]
        assert reasons(bad) == {"corrupt_parquet": 1}
        good, bad = read_all(jsonl("mem", "memory://reliability/remote.jsonl"))
        assert len(good) == 4 and bad == []
    finally:
        fs.rm("/reliability", recursive=True)


# --- files that are not readable regular files -------------------------------------------


def test_dangling_symlink(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"".join(jsonl_lines(3)))
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "gone.jsonl")
    good, bad = read_all(jsonl("links", tmp_path / "*.jsonl"))
    assert len(good) == 3 and reasons(bad) == {"unreadable_file": 1}
    assert bad[0].uri == str(tmp_path / "b.jsonl") and "dangling" in bad[0].detail
    with pytest.raises(SourceError, match=r"source 'one'.*b\.jsonl.*dangling"):
        read_all(jsonl("one", tmp_path / "b.jsonl"))


def test_directory_matching_the_pattern(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(b"".join(jsonl_lines(2)))
    (tmp_path / "sub.jsonl").mkdir()
    good, bad = read_all(jsonl("dirs", tmp_path / "*.jsonl"))
    assert len(good) == 2 and reasons(bad) == {"not_a_regular_file": 1}
    assert "directory" in bad[0].detail
    books = tmp_path / "books"
    (books / "chapter.txt").mkdir(parents=True)
    (books / "one.txt").write_text("one")
    good, bad = read_all(TextDirSource(name="books", path=str(books), pattern="*.txt"))
    assert [r.record["id"] for r in good] == ["one.txt"]
    assert reasons(bad) == {"not_a_regular_file": 1} and bad[0].locator == "file:chapter.txt"


@pytest.mark.timeout(20)
def test_fifo_in_a_text_dir_is_never_opened(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first text")
    (tmp_path / "b.txt").write_text("second text")
    os.mkfifo(tmp_path / "x.txt")
    good, bad = read_all(TextDirSource(name="texts", path=str(tmp_path), pattern="*.txt"))
    assert [r.record["id"] for r in good] == ["a.txt", "b.txt"]
    assert reasons(bad) == {"not_a_regular_file": 1} and "FIFO" in bad[0].detail
    assert bad[0].locator == "file:x.txt"
    with pytest.raises(SourceError, match=r"source 'fifo'.*x\.txt.*FIFO"):
        read_all(jsonl("fifo", tmp_path / "x.txt"))
    with pytest.raises(SourceError, match=r"source 'fifo_pq'.*x\.txt.*FIFO"):
        read_all(ParquetSource(name="fifo_pq", paths=[str(tmp_path / "x.txt")]))


def test_unreadable_file() -> None:
    folder = tempfile.mkdtemp(prefix="llmstack-unreadable-")  # not under pytest's 0700 root
    try:
        os.chmod(folder, 0o755)
        Path(folder, "a.jsonl").write_bytes(b"".join(jsonl_lines(2)))
        secret = Path(folder, "b.jsonl")
        secret.write_bytes(b"".join(jsonl_lines(2)))
        secret.chmod(0)
        good, bad = _read_as_unprivileged(jsonl("perm", Path(folder, "*.jsonl")))
        assert len(good) == 2 and reasons(bad) == {"unreadable_file": 1}
        assert bad[0].uri == str(secret) and "Permission denied" in bad[0].detail
    finally:
        shutil.rmtree(folder)


def _read_as_unprivileged(source: SourceBase) -> tuple[list[RawRecord], list[RawRecord]]:
    """Read as 'nobody' when running as root, whom chmod does not stop."""
    if os.geteuid() != 0:
        return read_all(source)
    try:
        os.seteuid(65534)
    except PermissionError:
        pytest.skip("running as root without the right to drop privileges")
    try:
        return read_all(source)
    finally:
        os.seteuid(0)


def test_read_error_inside_a_file(tmp_path: Path) -> None:
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs /proc/self/mem, a regular file whose reads fail")
    (tmp_path / "a.jsonl").write_bytes(b"".join(jsonl_lines(2)))
    (tmp_path / "b.jsonl").symlink_to("/proc/self/mem")
    good, bad = read_all(jsonl("eio", tmp_path / "*.jsonl"))
    assert len(good) == 2 and reasons(bad) == {"unreadable_file": 1}
    assert bad[0].locator == "after-line:0"


# --- sources that match nothing ----------------------------------------------------------


def test_text_dir_pattern_matching_nothing(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("not a txt file")
    with pytest.raises(SourceError, match=rf"source 'empty'.*{tmp_path}.*'\*\.txt'"):
        read_all(TextDirSource(name="empty", path=str(tmp_path), pattern="*.txt"))


def test_glob_matching_nothing_names_folder_and_pattern(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=rf"source 'g'.*folder '{tmp_path}'.*'\*\.jsonl'"):
        read_all(jsonl("g", tmp_path / "*.jsonl"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=rf"source 'gone'.*file not found: {tmp_path}"):
        read_all(jsonl("gone", tmp_path / "missing.jsonl"))


def test_warc_bundled_demo_reads_cleanly() -> None:
    demo = Path(__file__).resolve().parents[2] / "llmstack_dagster/demo_corpus/web/warc"
    good, bad = read_all(WarcSource(name="demo", paths=[str(demo / "*.warc.gz")]))
    assert len(good) == 37 and bad == []
    assert [r.locator for r in good][:3] == ["record:1", "record:2", "record:3"]


# --- through ingest ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_ingest_accounts_for_every_bad_input(storage, tmp_path: Path) -> None:
    lines = jsonl_lines(20)
    first = zstandard.ZstdCompressor().compress(b"".join(lines[:12]))
    second = zstandard.ZstdCompressor().compress(b"".join(lines[12:]))
    (tmp_path / "cut.jsonl.zst").write_bytes(first + second[: len(second) // 2])
    expected_lines = 12
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("a plain text document")
    os.mkfifo(texts / "pipe.txt")
    members = warc_records(3, gz=True)
    (tmp_path / "web.warc.gz").write_bytes(members[0] + b"junk" * 9 + members[1] + members[2][:-90])
    config = DomainConfig.model_validate(
        {
            "sources": [
                {"name": "zst", "kind": "jsonl", "paths": [str(tmp_path / "cut.jsonl.zst")]},
                {"name": "texts", "kind": "text_dir", "path": str(texts), "pattern": "*.txt"},
                {"name": "web", "kind": "warc", "paths": [str(tmp_path / "web.warc.gz")]},
            ]
        }
    )
    manifest = ingest_domain(storage, "web", config)
    assert manifest.extra["quarantine_reasons"] == {
        "truncated_zstd": 1,
        "not_a_regular_file": 1,
        "garbage_between_records": 1,
        "truncated_record": 1,
    }
    per_source = manifest.extra["per_source"]
    counted = [(s["read"], s["written"], s["quarantined"]) for s in per_source.values()]
    assert counted == [(expected_lines + 1, expected_lines, 1), (2, 1, 1), (4, 2, 2)]
    counts = manifest.counts
    assert counts["read"] == counts["written"] + counts["quarantined"] == expected_lines + 7
    drops = [r for _, t in iter_shard_tables(storage, manifest.drops) for r in t.to_pylist()]
    assert {d["locator"] for d in drops if d["reason"] == "not_a_regular_file"} == {
        f"{texts / 'pipe.txt'}#file:pipe.txt"
    }
