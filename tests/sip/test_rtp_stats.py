"""bench/rtp_stats.py: RTP figures from pcap files written here, and one real capture on lo."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import time
from pathlib import Path

import pytest

from bench.rtp_stats import PcapError, capture, main, rtp_stats


def rtp(pt: int, seq: int, ts: int, ssrc: int, *, marker: bool = False, body: bytes = b"") -> bytes:
    head = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    return head + (body or bytes([0xFF]) * 160)


def event(code: int, ts: int, ssrc: int, *, end: bool, marker: bool = False) -> bytes:
    body = struct.pack("!BBH", code, (0x80 if end else 0) | 10, 400)
    return rtp(101, 0, ts, ssrc, marker=marker, body=body)


def udp_ipv4(sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0x4000,
        64,
        17,
        0,
        bytes([127, 0, 0, 1]),
        bytes([127, 0, 0, 1]),
    )
    return ip + udp


def frame(linktype: int, packet: bytes) -> bytes:
    if linktype == 1:  # Ethernet, what dumpcap writes for Linux lo
        return bytes(12) + struct.pack("!H", 0x0800) + packet
    if linktype == 113:  # Linux cooked v1
        return struct.pack("!HHH8sH", 0, 772, 0, bytes(8), 0x0800) + packet
    if linktype == 276:  # Linux cooked v2
        return struct.pack("!HHIHBB8s", 0x0800, 0, 1, 772, 0, 0, bytes(8)) + packet
    raise AssertionError(linktype)


def write_pcap(
    path: Path,
    records: list[tuple[float, int, int, bytes]],
    *,
    linktype: int = 1,
    nanos: bool = False,
) -> Path:
    """records: (time s, src port, dst port, UDP payload)."""
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = [struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for t, sport, dport, payload in records:
        data = frame(linktype, udp_ipv4(sport, dport, payload))
        sec = int(t)
        frac = round((t - sec) * (1e9 if nanos else 1e6))
        out.append(struct.pack("<IIII", sec, frac, len(data), len(data)) + data)
    path.write_bytes(b"".join(out))
    return path


T0 = 1_700_000_000.0


def sample_records() -> list[tuple[float, int, int, bytes]]:
    """Two audio streams and one DTMF-only stream with exactly known timing.

    A (4000 -> 10000, ssrc 1): 11 PCMU packets 20 ms apart, a 2 s silence, 5 more with
    gaps 20, 20, 30, 50 ms -> gaps: 10x20 + 20, 20, 30, 50 (the 2 s one left out).
    B (4002 -> 10002, ssrc 2): 6 PCMA packets 40 ms apart -> 5 gaps of 40 ms.
    C (6000 -> 10000, ssrc 3): DTMF '1' as 3 packets (one timestamp), '5' as 2 packets.
    Plus noise: a non-RTP datagram, an RTP packet with payload type 96.
    """
    rec: list[tuple[float, int, int, bytes]] = []
    for i in range(11):
        rec.append((T0 + 0.020 * i, 4000, 10000, rtp(0, i, 160 * i, 1)))
    t = T0 + 0.200 + 2.0
    for i, gap in enumerate([0, 0.020, 0.020, 0.030, 0.050]):
        t += gap
        rec.append((t, 4000, 10000, rtp(0, 11 + i, 160 * (11 + i), 1)))
    for i in range(6):
        rec.append((T0 + 0.005 + 0.040 * i, 4002, 10002, rtp(8, i, 320 * i, 2)))
    rec.append((T0 + 0.5, 6000, 10000, event(1, 8000, 3, end=False, marker=True)))
    rec.append((T0 + 0.52, 6000, 10000, event(1, 8000, 3, end=True)))
    rec.append((T0 + 0.54, 6000, 10000, event(1, 8000, 3, end=True)))
    rec.append((T0 + 0.9, 6000, 10000, event(5, 9600, 3, end=False, marker=True)))
    rec.append((T0 + 0.92, 6000, 10000, event(5, 9600, 3, end=True)))
    rec.append((T0 + 0.3, 5060, 5080, b"INVITE sip:portal@127.0.0.1 SIP/2.0\r\n\r\n"))
    rec.append((T0 + 0.31, 4000, 10000, rtp(96, 99, 0, 1)))
    rec.sort(key=lambda r: r[0])
    return rec


@pytest.mark.parametrize("linktype", [1, 113, 276])
def test_counts_gaps_and_dtmf_are_exact(tmp_path: Path, linktype: int) -> None:
    pcap = write_pcap(tmp_path / "x.pcap", sample_records(), linktype=linktype)
    s = rtp_stats(pcap)
    assert s["streams"] == 3
    assert s["audio_streams"] == 2
    assert s["packets"] == 16 + 6 + 5
    assert s["dtmf_packets"] == 5
    assert s["dtmf_events"] == 2
    by_ssrc = {p["ssrc"]: p for p in s["per_stream"]}
    assert by_ssrc[1]["packets"] == 16
    assert by_ssrc[1]["gaps_ms"] == [20.0] * 10 + [20.0, 20.0, 30.0, 50.0]
    assert by_ssrc[1]["gap_ms_max"] == 50.0
    assert by_ssrc[1]["pps"] == pytest.approx(14 / 0.320, abs=1e-3)
    assert by_ssrc[2]["gaps_ms"] == [40.0] * 5
    assert by_ssrc[2]["pps"] == pytest.approx(25.0, abs=1e-3)
    assert by_ssrc[3]["audio_packets"] == 0 and by_ssrc[3]["pps"] is None
    assert (by_ssrc[3]["src_port"], by_ssrc[3]["dst_port"]) == (6000, 10000)
    # 19 gaps: 12x20, 30, 50, 5x40 -> sorted: 12x20, 30, 5x40, 50
    assert s["gaps"] == 19
    assert s["gap_ms_p50"] == 20.0  # rank ceil(19*0.5)=10 -> 20
    assert s["gap_ms_p99"] == 50.0
    assert s["gap_ms_max"] == 50.0
    assert s["pps_median"] == pytest.approx((14 / 0.320 + 25.0) / 2, abs=1e-3)


def test_dst_port_filter_and_dtmf_pt(tmp_path: Path) -> None:
    pcap = write_pcap(tmp_path / "x.pcap", sample_records(), nanos=True)
    s = rtp_stats(pcap, dst_ports={10002})
    assert (s["streams"], s["packets"], s["dtmf_events"]) == (1, 6, 0)
    assert s["gap_ms_p99"] == 40.0
    # with another telephone-event type, the 101 packets are not RTP, the pt 96 one is
    s = rtp_stats(pcap, dst_ports={10000}, dtmf_pt=96)
    assert (s["streams"], s["packets"], s["dtmf_packets"], s["dtmf_events"]) == (1, 17, 1, 1)


def test_empty_and_bad_files(tmp_path: Path) -> None:
    s = rtp_stats(write_pcap(tmp_path / "e.pcap", []))
    assert s["streams"] == 0 and s["gap_ms_p99"] is None and s["pps_median"] is None
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
    with pytest.raises(PcapError, match="pcapng"):
        rtp_stats(bad)


def test_cli_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = write_pcap(tmp_path / "x.pcap", sample_records())
    assert main([str(pcap), "--dst-port", "10000"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["streams"] == 2 and out["dtmf_events"] == 2
    assert "gaps_ms" not in out["per_stream"][0]


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap (tshark) not installed")
def test_capture_real_traffic_on_lo(tmp_path: Path) -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        try:
            with capture([port], tmp_path / "lo.pcap") as pcap:
                # other traffic on lo must not be recorded
                tx.sendto(rtp(0, 0, 0, 77), ("127.0.0.1", 9))
                for i in range(20):
                    tx.sendto(rtp(0, i, 160 * i, 0x1234), ("127.0.0.1", port))
                    time.sleep(0.020)
        except RuntimeError as exc:
            if "ermission" not in str(exc):
                raise
            pytest.skip(f"no permission to capture on lo here: {exc}")
    finally:
        tx.close()
        rx.close()
    s = rtp_stats(pcap)
    assert s["streams"] == 1
    assert s["packets"] == 20
    assert s["per_stream"][0]["ssrc"] == 0x1234
    assert s["per_stream"][0]["dst_port"] == port
    assert 15 <= s["gap_ms_p50"] <= 40
    assert 30 <= s["pps_median"] <= 60
