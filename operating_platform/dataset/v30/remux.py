"""Join episode videos into one mp4, or cut one episode out, by copying packets (no re-encode).

Every episode video starts with a keyframe (each is its own encode), so episode boundaries
are always clean cut points. Frame i of a joined file sits at exactly i/fps: each source's
timestamps are shifted by the frames before it, in the stream's own time base.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from ..format import fsync_file
from ..video import VideoEncodeError


def _ticks_per_frame(time_base: Fraction, fps: int, where: Path) -> int:
    ticks = 1 / (Fraction(fps) * time_base)
    if ticks.denominator != 1:
        raise VideoEncodeError(f"{where}: time base {time_base} cannot place frames exactly at i/{fps} s")
    return int(ticks)


def concat_videos(sources: list[tuple[Path, int]], out: Path, fps: int) -> None:
    """Write `out` holding the packets of each (video, frame_count) in order; fsynced."""
    out.parent.mkdir(parents=True, exist_ok=True)
    offset = 0
    with av.open(str(out), "w") as oc:
        ostream = None
        for src, frames in sources:
            with av.open(str(src)) as ic:
                istream = ic.streams.video[0]
                codec = (istream.codec_context.name, istream.codec_context.width, istream.codec_context.height)
                if ostream is None:
                    ostream = oc.add_stream_from_template(istream, opaque=True)
                    ostream.time_base = istream.time_base
                    time_base, first_codec = istream.time_base, codec
                elif istream.time_base != time_base or codec != first_codec:
                    raise VideoEncodeError(f"{src}: {codec} with time base {istream.time_base} cannot follow "
                                           f"{first_codec} with time base {time_base} in one file")
                tpf = _ticks_per_frame(time_base, fps, src)
                copied = 0
                for packet in ic.demux(istream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts += offset
                    packet.dts += offset
                    packet.stream = ostream
                    oc.mux(packet)
                    copied += 1
                if copied != frames:
                    raise VideoEncodeError(f"{src}: holds {copied} frames, the metadata says {frames}")
                offset += frames * tpf
    fsync_file(out)


def cut_video(src: Path, first_frame: int, frames: int, out: Path, fps: int) -> None:
    """Write `out` with frames [first_frame, first_frame + frames) of `src`, starting at 0; fsynced.

    The cut must start on a keyframe (an episode boundary of a packed file is one)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as ic, av.open(str(out), "w") as oc:
        istream = ic.streams.video[0]
        tpf = _ticks_per_frame(istream.time_base, fps, src)
        start, end = first_frame * tpf, (first_frame + frames) * tpf
        ostream = oc.add_stream_from_template(istream, opaque=True)
        ostream.time_base = istream.time_base
        copied = 0
        first = True
        for packet in ic.demux(istream):
            if packet.dts is None or packet.pts is None or not start <= packet.pts < end:
                continue
            if first and not packet.is_keyframe:
                raise VideoEncodeError(f"{src}: frame {first_frame} is not a keyframe; cannot cut there without re-encoding")
            first = False
            packet.pts -= start
            packet.dts -= start
            packet.stream = ostream
            oc.mux(packet)
            copied += 1
    if copied != frames:
        raise VideoEncodeError(f"{src}: frames {first_frame}..{first_frame + frames - 1} hold {copied} packets, expected {frames}")
    fsync_file(out)
