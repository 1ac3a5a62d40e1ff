"""Type stubs for dtls._native, the cffi module built from csrc/dtls_native.h.

Pointers, structs and opaque objects are cffi cdata (typed Any here); the C
functions take positional arguments only.
"""

from collections.abc import Callable
from typing import Any

ffi: Any  # a cffi.FFI instance (typed Any: cffi ships no stubs)

class _Lib:
    DTLS_ERR_MALFORMED: int
    DTLS_ERR_REPLAYED: int
    DTLS_ERR_AUTH: int
    DTLS_ERR_BUFFER: int
    DTLS_ERR_ARGUMENT: int
    DTLS_ERR_CRYPTO: int
    DTLS_TLS_AES_128_GCM_SHA256: int
    DTLS_TLS_AES_256_GCM_SHA384: int
    DTLS_TLS_CHACHA20_POLY1305_SHA256: int
    DTLS_TLS_AES_128_CCM_SHA256: int
    DTLS_TLS_AES_128_CCM_8_SHA256: int
    DTLS_HDR_CID: int
    DTLS_APP_GENERAL: int
    DTLS_APP_OTHER: int
    DTLS_HDR_SEQ16: int
    DTLS_HDR_LENGTH: int
    DTLS_RECORD_PLAINTEXT: int
    DTLS_RECORD_CIPHERTEXT: int
    DTLS_HASH_SHA256: int
    DTLS_HASH_SHA384: int

    def dtls_openssl_version(self) -> Any: ...
    def dtls_cipher_new(
        self,
        suite: int,
        key: Any,
        key_len: int,
        iv: Any,
        iv_len: int,
        sn_key: Any,
        sn_key_len: int,
        /,
    ) -> Any: ...
    def dtls_cipher_free(self, c: Any, /) -> None: ...
    def dtls_cipher_tag_len(self, c: Any, /) -> int: ...
    def dtls_cipher_mask(self, c: Any, sample: Any, sample_len: int, mask: Any, /) -> int: ...
    def dtls_hkdf_extract(
        self, hash_id: int, salt: Any, salt_len: int, ikm: Any, ikm_len: int, out: Any,
        out_cap: int, /,
    ) -> int: ...
    def dtls_hkdf_expand(
        self, hash_id: int, prk: Any, prk_len: int, info: Any, info_len: int, out: Any,
        out_len: int, /,
    ) -> int: ...
    def dtls_traffic_keys(
        self, suite: int, secret: Any, secret_len: int, key: Any, key_len: int, iv: Any,
        sn_key: Any, /,
    ) -> int: ...
    def dtls_cipher_from_secret(self, suite: int, secret: Any, secret_len: int, /) -> Any: ...
    def dtls_key_stage(
        self, hash_id: int, prefix: Any, prefix_len: int, prev: Any, prev_len: int, ikm: Any,
        ikm_len: int, context: Any, context_len: int, labels: Any, labels_len: int,
        n_finished: int, out: Any, out_cap: int, /,
    ) -> int: ...
    def dtls_replay_new(self, size_bits: int, /) -> Any: ...
    def dtls_replay_free(self, w: Any, /) -> None: ...
    def dtls_replay_reset(self, w: Any, /) -> None: ...
    def dtls_replay_check(self, w: Any, seq: int, /) -> int: ...
    def dtls_replay_mark(self, w: Any, seq: int, /) -> None: ...
    def dtls_replay_next(self, w: Any, /) -> int: ...
    def dtls_seal(
        self,
        c: Any,
        epoch: int,
        seq: int,
        flags: int,
        cid: Any,
        cid_len: int,
        content_type: int,
        payload: Any,
        payload_len: int,
        padding: int,
        out: Any,
        out_cap: int,
        /,
    ) -> int: ...
    def dtls_sealed_len(
        self, c: Any, flags: int, cid_len: int, payload_len: int, padding: int, /
    ) -> int: ...
    def dtls_seal_plaintext(
        self,
        content_type: int,
        epoch: int,
        seq: int,
        payload: Any,
        payload_len: int,
        out: Any,
        out_cap: int,
        /,
    ) -> int: ...
    def dtls_split_datagram(
        self, data: Any, length: int, cid_len: int, spans: Any, max_spans: int, dropped: Any, /
    ) -> int: ...
    def dtls_reconstruct_seq(self, expected: int, low: int, bits: int, /) -> int: ...
    def dtls_open(
        self,
        c: Any,
        window: Any,
        next_seq: int,
        rec: Any,
        rec_len: int,
        cid_len: int,
        out: Any,
        out_cap: int,
        result: Any,
        /,
    ) -> int: ...
    def dtls_open_in_place(
        self,
        c: Any,
        window: Any,
        next_seq: int,
        rec: Any,
        rec_len: int,
        cid_len: int,
        result: Any,
        /,
    ) -> int: ...
    def dtls_seal_batch(
        self,
        c: Any,
        epoch: int,
        flags: int,
        cid: Any,
        cid_len: int,
        padding: int,
        items: Any,
        n: int,
        /,
    ) -> int: ...
    def dtls_seal_records(
        self,
        c: Any,
        epoch: int,
        flags: int,
        cid: Any,
        cid_len: int,
        padding: int,
        seqs: Any,
        content_types: Any,
        payloads: Any,
        payloads_len: int,
        payload_lens: Any,
        n: int,
        out: Any,
        out_cap: int,
        record_ends: Any,
        /,
    ) -> int: ...
    def dtls_open_batch(self, c: Any, window: Any, cid_len: int, items: Any, n: int, /) -> int: ...
    def dtls_open_records(
        self,
        c: Any,
        window: Any,
        next_seq: int,
        cid_len: int,
        data: Any,
        data_len: int,
        record_lens: Any,
        n: int,
        seqs: Any,
        content_types: Any,
        plaintext_offsets: Any,
        plaintext_lens: Any,
        status: Any,
        /,
    ) -> int: ...
    def dtls_seal_segments(
        self,
        c: Any,
        epoch: int,
        seq: int,
        flags: int,
        cid: Any,
        cid_len: int,
        content_type: int,
        data: Any,
        data_len: int,
        payload_len: int,
        padding: int,
        out: Any,
        out_cap: int,
        segment_size: Any,
        /,
    ) -> int: ...
    def dtls_open_segments(
        self,
        c: Any,
        window: Any,
        next_seq: int,
        cid_len: int,
        data: Any,
        data_len: int,
        segment_size: int,
        max_segments: int,
        seqs: Any,
        content_types: Any,
        plaintext_offsets: Any,
        plaintext_lens: Any,
        status: Any,
        /,
    ) -> int: ...
    def dtls_seal_run(
        self, c: Any, epoch: int, seq: int, flags: int, cid: Any, cid_len: int,
        content_type: int, padding: int, payloads: Any, payloads_len: int, payload_lens: Any,
        n: int, out: Any, out_cap: int, record_ends: Any,
    ) -> int: ...  # fmt: skip
    def dtls_app_sender_new(self, c: Any, epoch: int, cid: bytes, cid_len: int) -> Any: ...
    def dtls_app_sender_free(self, s: Any) -> None: ...
    def dtls_app_seal(
        self, s: Any, seq: int, payload: Any, payload_len: int, out: Any, out_cap: int
    ) -> int: ...
    def dtls_app_receiver_new(
        self, c: Any, window: Any, epoch_bits: int, cid: bytes, cid_len: int
    ) -> Any: ...
    def dtls_app_receiver_free(self, r: Any) -> None: ...
    def dtls_app_open(
        self, r: Any, datagram: Any, datagram_len: int, max_plaintext: int, out: Any, out_cap: int
    ) -> int: ...
    def dtls_app_result(self, r: Any) -> Any: ...
    def dtls_app_py_install(self) -> int: ...
    def dtls_app_sender_take(self, s: Any, counts: Any) -> None: ...
    def dtls_app_receiver_take(self, r: Any, counts: Any) -> None: ...
    def dtls_open_run(
        self,
        c: Any,
        window: Any,
        cid: Any,
        cid_len: int,
        epoch_bits: int,
        content_type: int,
        max_plaintext: int,
        data: Any,
        data_len: int,
        datagram_lens: Any,
        n: int,
        max_records: int,
        seqs: Any,
        content_types: Any,
        plaintext_offsets: Any,
        plaintext_lens: Any,
        status: Any,
        progress: Any,
        /,
    ) -> int: ...
    def dtls_pool_new(self, slab_size: int, count: int, /) -> Any: ...
    def dtls_pool_free(self, p: Any, /) -> None: ...
    def dtls_pool_acquire(self, p: Any, /) -> int: ...
    def dtls_pool_release(self, p: Any, idx: int, /) -> int: ...
    def dtls_pool_slab(self, p: Any, idx: int, /) -> Any: ...
    def dtls_pool_get_stats(self, p: Any, stats: Any, /) -> None: ...
    def dtls_sendmmsg(self, fd: int, dgrams: Any, n: int, /) -> int: ...
    def dtls_recvmmsg(self, fd: int, dgrams: Any, n: int, /) -> int: ...
    def dtls_gso_supported(self, fd: int, /) -> int: ...
    def dtls_send_segments(
        self, fd: int, buf: Any, length: int, segment_size: int, addr: Any, addr_len: int, /
    ) -> int: ...
    def dtls_gro_enable(self, fd: int, /) -> int: ...
    def dtls_gro_supported(self, fd: int, /) -> int: ...
    def dtls_bench_raw_aead_seal(
        self,
        c: Any,
        aad: Any,
        aad_len: int,
        payload: Any,
        payload_len: int,
        out: Any,
        out_cap: int,
        n: int,
        /,
    ) -> int: ...
    def dtls_bench_seal(
        self, c: Any, flags: int, payload: Any, payload_len: int, out: Any, out_cap: int, n: int, /
    ) -> int: ...
    def dtls_bench_open(
        self, c: Any, rec: Any, rec_len: int, out: Any, out_cap: int, n: int, /
    ) -> int: ...
    def dtls_bench_frame_mask(
        self, c: Any, flags: int, out: Any, out_cap: int, n: int, /
    ) -> int: ...

lib: _Lib

# csrc/py_app_record.c, once lib.dtls_app_py_install() has run
def instance_maker(cls: type[Any], names: tuple[str, ...], /) -> Callable[..., Any]: ...
def app_sealer(
    address: int, owner: object, overhead: int, shortest: int, failed: Callable[[int], object], /
) -> tuple[Callable[[int, Any], bytes], Callable[[int, list[Any]], list[bytes]]]: ...
def app_opener(
    address: int,
    owner: object,
    other: Callable[[tuple[int, int, bytes]], Any],
    failed: Callable[[int], Any],
    /,
) -> Callable[[Any, int], Any]: ...
