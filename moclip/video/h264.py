"""What an H.264 stream's sequence parameter set (SPS) says about its references: ``max_num_ref_frames``.

A stream that keeps one reference frame (most phones' and cameras' hardware encoders) always refers to the
previous anchor, as ``moclip.video.mv_tensor`` assumes; one that keeps more (x264's defaults: 3, and B-pyramids)
may refer further back, and then each block's reference is found by matching pictures (``References``), which
costs about as much as decoding. Read from the container's extradata: ``avcC`` (MP4, MOV, MKV) or Annex B start
codes. ITU-T H.264 section 7.3.2.1.1.
"""

from __future__ import annotations

HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class _Bits:
    """Exp-Golomb reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def bit(self) -> int:
        byte = self.data[self.pos >> 3]  # IndexError past the end: the caller gives up
        self.pos += 1
        return (byte >> (7 - ((self.pos - 1) & 7))) & 1

    def bits(self, n: int) -> int:
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _sps_nals(extradata: bytes) -> list[bytes]:
    if len(extradata) > 8 and extradata[0] == 1:  # avcC
        n, pos, out = extradata[5] & 0x1F, 6, []
        for _ in range(n):
            size = int.from_bytes(extradata[pos:pos + 2], "big")
            out.append(extradata[pos + 2:pos + 2 + size])
            pos += 2 + size
        return out
    parts = extradata.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")  # Annex B
    return [p for p in parts if p and p[0] & 0x1F == 7]


def _skip_scaling_list(r: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last


def max_reference_frames(extradata: bytes | None) -> int | None:
    """``max_num_ref_frames`` of the first SPS in ``extradata``; None when there is none or it does not parse."""
    for nal in _sps_nals(extradata or b""):
        try:
            r = _Bits(_rbsp(nal[1:]))  # after the NAL header byte
            profile = r.bits(8)
            r.bits(16)  # constraint flags, level
            r.ue()  # seq_parameter_set_id
            if profile in HIGH_PROFILES:
                chroma = r.ue()
                if chroma == 3:
                    r.bit()  # separate_colour_plane_flag
                r.ue(), r.ue()  # bit depths
                r.bit()  # qpprime_y_zero_transform_bypass_flag
                if r.bit():  # seq_scaling_matrix_present_flag
                    for i in range(8 if chroma != 3 else 12):
                        if r.bit():
                            _skip_scaling_list(r, 16 if i < 6 else 64)
            r.ue()  # log2_max_frame_num_minus4
            poc_type = r.ue()
            if poc_type == 0:
                r.ue()
            elif poc_type == 1:
                r.bit()
                r.se(), r.se()
                for _ in range(r.ue()):
                    r.se()
            return r.ue()
        except (IndexError, ValueError):
            continue
    return None
