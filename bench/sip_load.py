"""SIP load: `ivr serve` with the portal vs a raw pyVoIP answering machine, side by side.

For each concurrency level, SIPp places that many calls through Kamailio on loopback
(bounded: ``-m N -l N``), each ~15 s: it listens to the prompts, sends ``4711#`` as
RFC 4733 events after 3 s, and hangs up at 15 s. Against (a) a raw pyVoIP 1.6.8 program
playing the same prompt audio (``bench/raw_pyvoip.py``, the baseline) and (b) ``ivr
serve`` with the Anywhere Portal. Measured per level: failed calls (SIPp), CPU and
peak memory of the serving process per call, RTP packets/s per stream and inter-packet
jitter p50/p99 (|gap - 20 ms|) as received (a dumpcap capture on ``lo``, gaps > 1 s — pauses between
prompts — excluded), DTMF keys lost (sent by SIPp minus counted by the server).

A level "holds" with 0 failed calls, 0 keys lost, packets/s >= 49 per stream and
jitter p99 <= 5 ms. PIN hashes are argon2id at minimum cost here (said in the output):
the benchmark measures the runtime, not the KDF (~0.1 s per attempt in production).

    .venv/bin/python bench/sip_load.py [--levels 10,50,100,200,300,400] [--hold 15]

Several processes behind Kamailio's dispatcher (``ivr serve --workers N``):
``bench/workers_load.py``, which measures each level with :func:`load_level` here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rtp_stats import capture, rtp_stats  # noqa: E402
from tests.sip.callers import scenario  # noqa: E402
from tests.sip.peers import Kamailio, free_udp_port, sipp_popen  # noqa: E402

KEYS = "4711#"
PROMPTS = ("portal_good_morning", "portal_welcome", "portal_enter_pin", "portal_menu")
BIN = Path(sys.executable).parent


@dataclass
class Level:
    target: str
    calls: int
    failed: int
    cpu_per_call_ms_s: float  # CPU milliseconds per second of call, per call
    rss_peak_mib: float
    rss_per_call_kib: float
    threads_peak: int
    pps: float | None
    jitter_p50: float | None  # |inter-packet gap - 20 ms|, ms
    jitter_p99: float | None
    streams: int
    keys_lost: int
    processes: int = 1  # serving processes
    cpu_cores: float = 0.0  # their CPU seconds per second of the SIPp run
    proxy_cpu_cores: float | None = None  # Kamailio's, likewise
    machine_cores: float = 0.0  # the whole machine's busy CPUs (SIPp, dumpcap, others too)
    others_cores: float = 0.0  # of which other programs' (not this benchmark's processes)

    @property
    def holds(self) -> bool:
        return (
            self.failed == 0
            and self.keys_lost == 0
            and self.streams >= self.calls
            and (self.pps or 0) >= 49.0
            and self.jitter_p99 is not None
            and self.jitter_p99 <= 5.0
        )


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * q / 100))], 2)


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def prompt_wav(path: Path) -> Path:
    """The portal's first prompts as one 8 kHz WAV (the baseline plays the same audio)."""
    from ivr.audio.convert import wav_bytes
    from ivr.audio.library import PromptAudio
    from ivr.prompts.catalog import load_catalog

    audio = PromptAudio(load_catalog(ROOT / "prompts" / "de", "de"))
    audio.render()
    pcm = b"".join(audio.pcm(p, {"code": "*11"}) for p in PROMPTS)
    path.write_bytes(wav_bytes(pcm))
    return path


def portal_copy(work: Path, name: str) -> Path:
    from ivr.portal.demo import copy_with_cheap_hashes

    target = work / name
    target.mkdir()
    return copy_with_cheap_hashes(ROOT / "examples" / "portal", target) / "portal.yaml"


def start_target(
    target: str, user: str, registrar: int, port: int, work: Path, wav: Path
) -> subprocess.Popen[bytes]:
    stats = work / f"{target}-stats.json"
    if target == "raw":
        cmd = [
            sys.executable,
            str(ROOT / "bench" / "raw_pyvoip.py"),
            "--password",
            "x",
            "--wav",
            str(wav),
            "--rtp-low",
            "30000",
            "--rtp-high",
            "39999",
        ]
    else:
        cmd = [
            str(BIN / "ivr"),
            "serve",
            str(ROOT / "dialplans" / "anywhere_portal.yaml"),
            "--portal",
            str(portal_copy(work, user)),
            "--rtp-timeout",
            "0",
            "--rtp-ports",
            "30000-39999",
            "--password",
            "x",
            # capacity, not admission: all calls come through the one proxy
            "--call-rate",
            "10000",
            "--call-burst",
            "10000",
        ]
    cmd += [
        "--registrar",
        f"127.0.0.1:{registrar}",
        "--user",
        user,
        "--port",
        str(port),
        "--stats",
        str(stats),
    ]
    return subprocess.Popen(
        cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=(work / f"{target}.log").open("ab")
    )


def wait_registered(proxy: Kamailio, user: str, timeout: float = 20.0) -> None:
    """Until Kamailio routes calls for ``user`` (an OPTIONS to it is answered)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.3)
    me = sock.getsockname()[1]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            tag = time.monotonic_ns()
            request = (
                f"OPTIONS sip:{user}@127.0.0.1:{proxy.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{tag}\r\n"
                f"From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:{user}@127.0.0.1>\r\n"
                f"Call-ID: {tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.sendto(
                request.encode(),
                ("127.0.0.1", proxy.port),
            )
            try:
                reply = sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if " 404 " not in reply.split("\r\n")[0]:
                return
            time.sleep(0.3)
        raise TimeoutError("the target did not register")
    finally:
        sock.close()


class Served:
    """The serving side of one level: its processes (CPU, memory), how to stop it, and
    the DTMF keys it counted (its ``--stats`` files, written at exit)."""

    def __init__(self, proc: subprocess.Popen[bytes], stats: list[Path]) -> None:
        self.proc = proc
        self.stats = stats

    def pids(self) -> list[int]:
        return [self.proc.pid]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def keys(self) -> int:
        return sum(json.loads(path.read_text())["keys"] for path in self.stats)


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and its /proc/PID/stat fields after the command name
    (``fields[1]`` is the parent, ``[2]`` the process group, ``[11:13]`` CPU ticks)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue


def pids_where(*, ppid: int | None = None, pgid: int | None = None) -> list[int]:
    """The processes whose parent is ``ppid``, or whose process group is ``pgid``."""
    field, value = (1, ppid) if ppid is not None else (2, pgid)
    return [pid for pid, fields in proc_stats() if int(fields[field]) == value]


def proxy_pids(proxy: Kamailio) -> list[int]:
    """Kamailio's processes: its own process group (started in a new session), led by
    the main process (``-D``: not daemonized, and so no pid file either)."""
    proc = proxy._proc  # the peer helper keeps the Popen private; read-only use here
    return pids_where(pgid=proc.pid) if proc is not None and proc.poll() is None else []


def machine_busy() -> float:
    """CPU seconds all CPUs of the machine spent busy so far (/proc/stat), everyone's."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def foreign_cpu() -> dict[int, float]:
    """CPU seconds so far of every process that is not this one or its descendant
    (other programs on the machine, which would disturb a level)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid, fields in proc_stats():
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    me = os.getpid()

    def ours(pid: int) -> bool:
        for _ in range(64):
            if pid == me:
                return True
            if pid <= 1 or pid not in parents:
                return False
            pid = parents[pid]
        return False

    return {pid: seconds for pid, seconds in cpu.items() if not ours(pid)}


def total_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone
            total += cpu_seconds(pid)
    return total


def run_level(
    target: str, calls: int, hold: float, proxy: Kamailio, work: Path, wav: Path
) -> Level:
    port = free_udp_port()
    user = f"portal-{target}-{calls}"  # a fresh binding: a stale one of the last run is never hit
    proc = start_target(target, user, proxy.port, port, work, wav)
    served = Served(proc, [work / f"{target}-stats.json"])
    try:
        wait_registered(proxy, user)
    except BaseException:
        served.stop()
        raise
    return load_level(target, calls, hold, proxy, user, served, work)


def load_level(
    target: str, calls: int, hold: float, proxy: Kamailio, service: str, served: Served, work: Path
) -> Level:
    """``calls`` SIPp callers of ``sip:service@proxy`` at once (each ``hold`` s, keying
    ``KEYS``) against the running ``served``, which is stopped at the end; the figures."""
    try:
        time.sleep(0.5)
        pids = served.pids()
        idle = [proc_status(pid) for pid in pids]
        cpu0 = total_cpu(pids)
        kamailio = proxy_pids(proxy)
        proxy_cpu0 = total_cpu(kamailio)
        busy0 = machine_busy()
        others0 = foreign_cpu()
        xml = work / "caller.xml"
        hold_ms = int(hold * 1000)
        xml.write_text(
            scenario(
                [
                    ("pause", 3000),
                    ("keys", KEYS),
                    ("pause", hold_ms - 3000 - 350 * len(KEYS)),
                    ("hangup",),
                ],
                "bye",
            )
        )
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the callers' audio port:
        sink.bind(("127.0.0.1", 0))  # bound (no ICMP errors back), never read
        media = sink.getsockname()[1]
        pcap = work / f"{target}-{calls}.pcap"
        rate = max(5.0, min(50.0, calls / 4))
        peak = {"VmRSS": 0, "Threads": 0}
        started = time.monotonic()
        with (
            capture(None, pcap, bpf=f"udp dst port {media}"),
            sipp_popen(
                xml,
                proxy.address,
                service=service,
                calls=calls,
                limit=calls,
                rate=rate,
                timeout=hold + calls / rate + 60,
                keys={"caller": "+491711234567", "sink_port": str(media), "codec_pt": "8"},
            ) as sipp,
        ):
            while sipp.popen.poll() is None:
                statuses = [proc_status(pid) for pid in pids]
                for key in peak:
                    peak[key] = max(peak[key], sum(st.get(key, 0) for st in statuses))
                time.sleep(0.25)
            result = sipp.result()
            if not result.ok:
                (work / f"{target}-{calls}-sipp-errors.log").write_text(result.errors[-20000:])
                print(
                    f"{target} @ {calls}: SIPp errors:\n{result.errors[-1500:]}",
                    file=sys.stderr,
                )
        wall = time.monotonic() - started
        cpu = total_cpu(pids) - cpu0
        proxy_cpu = total_cpu(kamailio) - proxy_cpu0
        busy = machine_busy() - busy0
        others1 = foreign_cpu()
        others = sum(others1[pid] - others0[pid] for pid in others1.keys() & others0.keys())
        gone = [pid for pid in pids if not Path(f"/proc/{pid}").exists()]
        if gone:  # its CPU is partly lost with it: said, not hidden
            print(
                f"{target} @ {calls}: serving processes {gone} died during the run", file=sys.stderr
            )
        sink.close()
    finally:
        served.stop()
    figures = rtp_stats(pcap)
    pcap.unlink()
    jitter = sorted(abs(g - 20.0) for st in figures["per_stream"] for g in st["gaps_ms"])
    return Level(
        target=target,
        calls=calls,
        failed=result.failed + max(0, calls - result.successful - result.failed),
        cpu_per_call_ms_s=1000 * cpu / calls / hold,
        rss_peak_mib=peak["VmRSS"] / 1024,
        rss_per_call_kib=max(0, peak["VmRSS"] - sum(st.get("VmRSS", 0) for st in idle)) / calls,
        threads_peak=peak["Threads"],
        pps=figures["pps_median"],
        jitter_p50=percentile(jitter, 50),
        jitter_p99=percentile(jitter, 99),
        streams=figures["audio_streams"],
        keys_lost=len(KEYS) * calls - served.keys(),
        processes=len(pids),
        cpu_cores=cpu / wall,
        proxy_cpu_cores=proxy_cpu / wall if kamailio else None,
        machine_cores=busy / wall,
        others_cores=others / wall,
    )


def table(levels: list[Level]) -> str:
    head = (
        "| target | calls | failed | keys lost | pkts/s/stream | jitter p50 | jitter p99 "
        "| CPU ms/s per call | RSS peak | RSS/call | threads | holds |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = [
        f"| {lv.target} | {lv.calls} | {lv.failed} | {lv.keys_lost} | {lv.pps} "
        f"| {lv.jitter_p50} ms | {lv.jitter_p99} ms "
        f"| {lv.cpu_per_call_ms_s:.1f} | {lv.rss_peak_mib:.0f} MiB | {lv.rss_per_call_kib:.0f} KiB "
        f"| {lv.threads_peak} | {'yes' if lv.holds else 'no'} |"
        for lv in levels
    ]
    return "\n".join([head, *rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="10,50,100,200,300,400")
    ap.add_argument("--hold", type=float, default=15.0, help="seconds per call")
    ap.add_argument("--targets", default="raw,ivr")
    args = ap.parse_args()
    for tool in ("kamailio", "sipp", "dumpcap"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            print(f"needs {tool} (make test installs it)", file=sys.stderr)
            return 2
    levels = [int(x) for x in args.levels.split(",")]
    targets = args.targets.split(",")
    results: list[Level] = []
    with tempfile.TemporaryDirectory(prefix="sip-load-") as tmp:
        work = Path(tmp)
        wav = prompt_wav(work / "prompt.wav")
        with Kamailio() as proxy:
            for calls in levels:
                for target in targets:
                    try:
                        level = run_level(target, calls, args.hold, proxy, work, wav)
                    except Exception as exc:  # a level that breaks is reported, not fatal
                        print(f"{target} @ {calls}: {type(exc).__name__}: {exc}", file=sys.stderr)
                        continue
                    results.append(level)
                    print(table([level]).splitlines()[-1], flush=True)
    print("\nPIN hashes: argon2id at minimum cost (the runtime is measured, not the KDF).")
    print(table(results))
    best = {
        t: max((lv.calls for lv in results if lv.target == t and lv.holds), default=0)
        for t in targets
    }
    print("\nhighest concurrency that holds")
    print("(0 failed, 0 keys lost, >= 49 pkts/s, jitter p99 <= 5 ms):")
    for target, calls in best.items():
        print(f"  {target}: {calls}")
    if best.get("raw") and "ivr" in best:
        print(f"  ratio ivr / raw pyVoIP: {best['ivr'] / best['raw']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
