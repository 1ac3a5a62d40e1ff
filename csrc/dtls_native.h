/* dtls_native.h - the DTLS 1.3 record-layer hot path (RFC 9147 §4).
 *
 * The one header the Python side sees: csrc/build.py declares exactly this API to cffi.
 * Every function checks every length before it reads or writes; no input makes it
 * read or write out of bounds. Results >= 0 are lengths/counts, < 0 are DTLS_ERR_*.
 */
#ifndef DTLS_NATIVE_H
#define DTLS_NATIVE_H

#include <stddef.h>
#include <stdint.h>

/* Result codes (negative). The engine counts each kind separately (RFC 9147 §4.5.2). */
#define DTLS_ERR_MALFORMED (-1) /* header or length invalid, ciphertext < 16 bytes */
#define DTLS_ERR_REPLAYED (-2)  /* duplicate or behind the replay window (§4.5.1) */
#define DTLS_ERR_AUTH (-3)      /* AEAD tag check failed, or no content type found */
#define DTLS_ERR_BUFFER (-4)    /* caller's output buffer is too small */
#define DTLS_ERR_ARGUMENT (-5)  /* bad argument (unknown suite, key length, seq range) */
#define DTLS_ERR_CRYPTO (-6)    /* libcrypto failed (allocation, provider) */

/* Cipher suites (RFC 9846 Appendix B.4). */
#define DTLS_TLS_AES_128_GCM_SHA256 0x1301
#define DTLS_TLS_AES_256_GCM_SHA384 0x1302
#define DTLS_TLS_CHACHA20_POLY1305_SHA256 0x1303
#define DTLS_TLS_AES_128_CCM_SHA256 0x1304
#define DTLS_TLS_AES_128_CCM_8_SHA256 0x1305

/* Header form flags for sealing (RFC 9147 §4, Figure 3). */
#define DTLS_HDR_CID 0x10    /* C: include the connection ID */
#define DTLS_HDR_SEQ16 0x08  /* S: 16-bit sequence number (else 8-bit) */
#define DTLS_HDR_LENGTH 0x04 /* L: length present (else the record ends the datagram) */

/* Record kinds from the first byte (RFC 9147 §4.1). */
#define DTLS_RECORD_PLAINTEXT 1
#define DTLS_RECORD_CIPHERTEXT 2

const char *dtls_openssl_version(void);

/* ---- per-epoch, per-direction protection state (RFC 9147 §4.2.3) ---- */
typedef struct dtls_cipher dtls_cipher;

/* key_len must match the suite (16 or 32), iv_len 12, sn_key_len == key_len.
 * Returns NULL on a bad argument or a libcrypto failure. */
dtls_cipher *dtls_cipher_new(uint16_t suite, const uint8_t *key, size_t key_len,
                             const uint8_t *iv, size_t iv_len, const uint8_t *sn_key,
                             size_t sn_key_len);
void dtls_cipher_free(dtls_cipher *c); /* wipes key material */
size_t dtls_cipher_tag_len(const dtls_cipher *c);

/* The 16-byte-sample mask of §4.2.3 (exposed for tests): writes 16 bytes to mask. */
int dtls_cipher_mask(dtls_cipher *c, const uint8_t *sample, size_t sample_len, uint8_t *mask);

/* ---- key derivation (kdf.c) ---- */
#define DTLS_HASH_SHA256 1
#define DTLS_HASH_SHA384 2

/* HKDF-Extract (RFC 5869 §2.2; an empty salt is HashLen zeros): writes HashLen bytes.
 * Returns HashLen. */
int dtls_hkdf_extract(unsigned hash_id, const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                      size_t ikm_len, uint8_t *out, size_t out_cap);
/* HKDF-Expand (RFC 5869 §2.3): out_len 1 .. 255 * HashLen. Returns 0. */
int dtls_hkdf_expand(unsigned hash_id, const uint8_t *prk, size_t prk_len, const uint8_t *info,
                     size_t info_len, uint8_t *out, size_t out_len);
/* key and iv (RFC 9846 §7.3) and sn_key (RFC 9147 §4.2.3) of a traffic secret, with the
 * "dtls13" label prefix (§5.9), on the suite's hash; secret_len > 0. Returns 0. */
int dtls_traffic_keys(uint16_t suite, const uint8_t *secret, size_t secret_len, uint8_t *key,
                      size_t key_len, uint8_t *iv, uint8_t *sn_key);
/* One stage of the key schedule (RFC 9846 §7.1) in one call, HkdfLabels with `prefix`
 * ("dtls13", RFC 9147 §5.9; "tls13 " for TLS 1.3 vectors):
 *   salt   = Derive-Secret(prev, "derived", ""), prev the previous stage's secret (HashLen
 *            bytes; NULL: the Early Secret without a PSK, HKDF-Extract(0, 0));
 *   secret = HKDF-Extract(salt, ikm), ikm_len > 0;
 *   out    = secret || Derive-Secret(secret, label_i, context) for each label ||
 *            HKDF-Expand-Label(that secret, "finished", "", HashLen) for the first n_finished
 *            labels (the finished_key, §4.4.4).
 * labels: up to 8, each a uint8 length then the label. Returns the bytes written,
 * (1 + n_labels + n_finished) * HashLen. */
int dtls_key_stage(unsigned hash_id, const uint8_t *prefix, size_t prefix_len, const uint8_t *prev,
                   size_t prev_len, const uint8_t *ikm, size_t ikm_len, const uint8_t *context,
                   size_t context_len, const uint8_t *labels, size_t labels_len,
                   size_t n_finished, uint8_t *out, size_t out_cap);
/* dtls_cipher_new with the keys of a traffic secret (wiped after use). */
dtls_cipher *dtls_cipher_from_secret(uint16_t suite, const uint8_t *secret, size_t secret_len);

/* ---- anti-replay window (RFC 9147 §4.5.1) ---- */
typedef struct dtls_replay dtls_replay;

dtls_replay *dtls_replay_new(uint32_t size_bits); /* size rounded up to a multiple of 64; 64..65536 */
void dtls_replay_free(dtls_replay *w);
void dtls_replay_reset(dtls_replay *w);
/* 0 if seq is acceptable (new and not behind the window), DTLS_ERR_REPLAYED otherwise. */
int dtls_replay_check(const dtls_replay *w, uint64_t seq);
void dtls_replay_mark(dtls_replay *w, uint64_t seq);
/* The highest sequence number marked so far plus one (0 when none). */
uint64_t dtls_replay_next(const dtls_replay *w);

/* ---- sealing ---- */

/* Seal one DTLSCiphertext record into out (RFC 9147 §4):
 * header (flags: DTLS_HDR_*; epoch low two bits; cid when DTLS_HDR_CID; 8/16-bit seq;
 * length when DTLS_HDR_LENGTH), then AEAD(DTLSInnerPlaintext = payload || type || zeros[padding])
 * with additional data = the header with the unmasked sequence number and
 * nonce = iv XOR seq, then the sequence number masked with the first 16 ciphertext bytes.
 * Padding is raised as needed so that the ciphertext is at least 16 bytes.
 * seq must be < 2^48, cid_len <= 255 (and > 0 exactly with DTLS_HDR_CID), content_type
 * != 0, payload_len <= 2^14 and payload + type + padding <= 2^14 + 1 (else ARGUMENT).
 * payload may sit exactly where the ciphertext goes (out + header length: sealing in
 * place) but may not otherwise overlap out. Returns the record length. */
int dtls_seal(dtls_cipher *c, uint64_t epoch, uint64_t seq, unsigned flags, const uint8_t *cid,
              size_t cid_len, uint8_t content_type, const uint8_t *payload, size_t payload_len,
              size_t padding, uint8_t *out, size_t out_cap);

/* The length dtls_seal would produce (0 for arguments dtls_seal refuses). */
size_t dtls_sealed_len(const dtls_cipher *c, unsigned flags, size_t cid_len, size_t payload_len,
                       size_t padding);

/* Write one DTLSPlaintext record (epoch 0; RFC 9147 §4). Returns its length. */
int dtls_seal_plaintext(uint8_t content_type, uint16_t epoch, uint64_t seq,
                        const uint8_t *payload, size_t payload_len, uint8_t *out, size_t out_cap);

/* ---- splitting a datagram (RFC 9147 §4.1, §4.2) ---- */
typedef struct {
    uint32_t offset;      /* of the record in the datagram */
    uint32_t length;      /* of the whole record, header included */
    uint8_t kind;         /* DTLS_RECORD_PLAINTEXT or DTLS_RECORD_CIPHERTEXT */
    uint8_t first_byte;   /* content type (plaintext) or unified header flags byte */
    uint16_t epoch;       /* plaintext: the 16-bit epoch; ciphertext: the low two bits */
    uint64_t seq;         /* plaintext: the 48-bit sequence number; ciphertext: 0 */
} dtls_record_span;

/* Find the records of a datagram without copying. cid_len is the length of the CID
 * this endpoint receives (records with C=1 carry it). Parsing stops at the first record
 * that is malformed: *dropped is set to the bytes left unparsed (0 when all parsed).
 * Returns the number of spans written (at most max_spans). */
int dtls_split_datagram(const uint8_t *data, size_t len, size_t cid_len, dtls_record_span *spans,
                        size_t max_spans, size_t *dropped);

/* ---- opening ---- */
typedef struct {
    uint64_t seq;            /* the reconstructed full sequence number (§4.2.2) */
    uint32_t plaintext_len;  /* content length, padding and type removed */
    uint16_t header_len;     /* unified header length: the ciphertext starts at rec + header_len */
    uint8_t content_type;    /* the inner content type */
} dtls_open_result;

/* The full sequence number closest to expected whose low `bits` bits (8 or 16) are low
 * (RFC 9147 §4.2.2), kept within 0 .. 2^48-1. */
uint64_t dtls_reconstruct_seq(uint64_t expected, uint64_t low, unsigned bits);

/* Open one DTLSCiphertext record (a span from dtls_split_datagram, or a whole record):
 * parse the header (cid_len as above; with L=1 the record ends where its length says),
 * require 16 .. 2^14+256 bytes of ciphertext, unmask the sequence number, reconstruct it
 * against dtls_replay_next(window) (or next_seq when window is NULL), AEAD-open into out
 * (out may equal the ciphertext position inside rec: in place; no other overlap), strip
 * the zero padding, find the content type, check the window and mark it. The replay
 * check follows deprotection (RFC 9147 §4.5.1: "SHOULD happen after deprotecting"), so a
 * forged record is AUTH and an authentic duplicate is REPLAYED; the window is only
 * updated by a record that opened. The plaintext starts at out[0]; out_cap must be at
 * least the ciphertext length minus the tag. On AUTH the written output is zeroed.
 * Returns 0, or DTLS_ERR_MALFORMED / DTLS_ERR_REPLAYED / DTLS_ERR_AUTH / DTLS_ERR_BUFFER
 * (or DTLS_ERR_ARGUMENT / DTLS_ERR_CRYPTO for NULL pointers / a libcrypto failure). */
int dtls_open(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, const uint8_t *rec,
              size_t rec_len, size_t cid_len, uint8_t *out, size_t out_cap,
              dtls_open_result *result);

/* dtls_open in place: the plaintext replaces the ciphertext, at rec + result->header_len. */
int dtls_open_in_place(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, uint8_t *rec,
                       size_t rec_len, size_t cid_len, dtls_open_result *result);

/* ---- the application epoch, one record per call (RFC 9147 §4) ---- */
/* dtls_app_open: not exactly one record of this epoch and CID, or outside the limits:
 * left untouched (the general path takes it); opened, but another content type or longer
 * than max_plaintext (see dtls_app_result). */
#define DTLS_APP_GENERAL (-7)
#define DTLS_APP_OTHER (-8)

/* What sealing application data in one epoch needs: the cipher (not owned: it must
 * outlive the sender), the epoch, the CID the peer receives with (cid_len 0: none). */
typedef struct dtls_app_sender dtls_app_sender;
dtls_app_sender *dtls_app_sender_new(dtls_cipher *c, uint64_t epoch, const uint8_t *cid,
                                     size_t cid_len); /* NULL on a bad argument */
void dtls_app_sender_free(dtls_app_sender *s);
/* dtls_seal of one application_data record with sequence number seq, S=1, L=1, no
 * padding. Returns the record length or DTLS_ERR_*; a record sealed is counted. */
int dtls_app_seal(dtls_app_sender *s, uint64_t seq, const uint8_t *payload, size_t payload_len,
                  uint8_t *out, size_t out_cap);
/* counts = {records, bytes} sealed since the last call (then both start again at 0). */
void dtls_app_sender_take(dtls_app_sender *s, uint64_t counts[2]);

/* What opening the application epoch needs: the cipher and window (not owned), the low
 * two epoch bits, the CID the peer's records carry (cid_len 0: none). */
typedef struct dtls_app_receiver dtls_app_receiver;
dtls_app_receiver *dtls_app_receiver_new(dtls_cipher *c, dtls_replay *window, unsigned epoch_bits,
                                         const uint8_t *cid, size_t cid_len);
void dtls_app_receiver_free(dtls_app_receiver *r);
/* A datagram that is exactly one DTLSCiphertext record (§4.1) of this epoch carrying this
 * CID, with 16 .. 2^14+256 bytes of ciphertext, is opened as dtls_open does (window
 * checked and marked) into out. Returns the plaintext length when it is application data
 * of at most max_plaintext bytes; DTLS_APP_OTHER when it opened otherwise; DTLS_ERR_AUTH /
 * DTLS_ERR_REPLAYED / DTLS_ERR_BUFFER as dtls_open; DTLS_APP_GENERAL for any other
 * datagram (nothing read beyond the header, nothing changed). */
int dtls_app_open(dtls_app_receiver *r, const uint8_t *datagram, size_t datagram_len,
                  size_t max_plaintext, uint8_t *out, size_t out_cap);
/* counts = {records, datagram bytes} that dtls_app_open returned as application data
 * since the last call (then both start again at 0). */
void dtls_app_receiver_take(dtls_app_receiver *r, uint64_t counts[2]);
/* The last record dtls_app_open opened (its sequence number, type, plaintext length). */
const dtls_open_result *dtls_app_result(const dtls_app_receiver *r);
/* Gives dtls._native app_sealer and app_opener (dtls_app_seal and dtls_app_open as Python
 * functions bound to one sender or receiver, which make their result's bytes themselves)
 * and instance_maker (csrc/py_app_record.c). Called with the GIL, once or more (the
 * same functions again); 0, or -1 when it failed. */
int dtls_app_py_install(void);

/* ---- batches: one call for many records ---- */
typedef struct {
    const uint8_t *payload;
    size_t payload_len;
    uint64_t seq;
    uint8_t content_type;
    uint8_t *out;
    size_t out_cap;
    int result; /* record length or DTLS_ERR_* */
} dtls_seal_item;

/* Seal n records with one cipher, epoch, header form and CID. Returns how many succeeded. */
int dtls_seal_batch(dtls_cipher *c, uint64_t epoch, unsigned flags, const uint8_t *cid,
                    size_t cid_len, size_t padding, dtls_seal_item *items, size_t n);

/* The same over flat arrays (cheap to fill from Python): payload i is payload_lens[i]
 * bytes, the payloads lie back to back in payloads (payloads_len bytes in all); record i is
 * written to out right after record i-1, and record_ends[i] receives where it ends in out.
 * Stops at the first failure.
 * Returns the number of records sealed, or DTLS_ERR_* when the first one failed. */
int dtls_seal_records(dtls_cipher *c, uint64_t epoch, unsigned flags, const uint8_t *cid,
                      size_t cid_len, size_t padding, const uint64_t *seqs,
                      const uint8_t *content_types, const uint8_t *payloads,
                      size_t payloads_len, const uint32_t *payload_lens, size_t n, uint8_t *out,
                      size_t out_cap, uint32_t *record_ends);

/* dtls_seal_records with the sequence numbers seq, seq + 1, ... and one content type
 * (a sender's queue). */
int dtls_seal_run(dtls_cipher *c, uint64_t epoch, uint64_t seq, unsigned flags,
                  const uint8_t *cid, size_t cid_len, uint8_t content_type, size_t padding,
                  const uint8_t *payloads, size_t payloads_len, const uint32_t *payload_lens,
                  size_t n, uint8_t *out, size_t out_cap, uint32_t *record_ends);

typedef struct {
    const uint8_t *rec;
    size_t rec_len;
    uint8_t *out; /* NULL: open in place (rec must then point to writable memory) */
    size_t out_cap;
    dtls_open_result result;
    int status; /* 0 or DTLS_ERR_* */
} dtls_open_item;

/* Open n records of one epoch in order. Without a window, each record's sequence number is
 * reconstructed against one plus the highest opened so far in the batch (from 0).
 * Returns how many opened. */
int dtls_open_batch(dtls_cipher *c, dtls_replay *window, size_t cid_len, dtls_open_item *items,
                    size_t n);

/* The same over flat arrays, in place: record i is record_lens[i] bytes and follows record
 * i-1 in data (data_len bytes in all); without a window, reconstruction starts from
 * next_seq. Per record: seqs[i], content_types[i], plaintext_offsets[i] (from the start of
 * data), plaintext_lens[i] and status[i] (0 or DTLS_ERR_*); a failed record gets 0, 0, its
 * own offset, 0. Returns the number opened, or DTLS_ERR_ARGUMENT. */
int dtls_open_records(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, size_t cid_len,
                      uint8_t *data, size_t data_len, const uint32_t *record_lens, size_t n,
                      uint64_t *seqs, uint8_t *content_types, uint32_t *plaintext_offsets,
                      uint32_t *plaintext_lens, int8_t *status);

/* ---- segment batches for UDP GSO/GRO: records at a fixed stride in one buffer ---- */

/* Seal ceil(data_len / payload_len) records of one content type, record i carrying
 * data[i*payload_len ..] (payload_len bytes; the last may be shorter) with sequence number
 * seq + i, each written at out + i * stride where stride = dtls_sealed_len(c, flags,
 * cid_len, payload_len, padding): the output goes to dtls_send_segments as it is, one
 * record per UDP_SEGMENT segment. data may not overlap out. Nothing is written unless
 * every record fits (out_cap, seq + count - 1 < 2^48, total <= INT32_MAX). *segment_size
 * (when not NULL) receives the stride. Returns the total length written (0 for no data),
 * or DTLS_ERR_*. */
int dtls_seal_segments(dtls_cipher *c, uint64_t epoch, uint64_t seq, unsigned flags,
                       const uint8_t *cid, size_t cid_len, uint8_t content_type,
                       const uint8_t *data, size_t data_len, size_t payload_len, size_t padding,
                       uint8_t *out, size_t out_cap, uint32_t *segment_size);

/* Open a UDP_GRO buffer in place: segments of segment_size bytes (the last may be shorter;
 * 0 means one segment of data_len bytes), each exactly one DTLSCiphertext record opened
 * with dtls_open_in_place (replay window as there; without one, reconstruction starts
 * from next_seq and follows the records opened). A segment that is not exactly one
 * DTLSCiphertext record is MALFORMED and left as it was (the general path can take it).
 * Per segment, as dtls_open_records: seqs, content_types, plaintext_offsets (from data),
 * plaintext_lens, status. The arrays hold max_segments entries; more segments than that
 * is DTLS_ERR_ARGUMENT. Returns the number opened, or DTLS_ERR_ARGUMENT. */
int dtls_open_segments(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, size_t cid_len,
                       uint8_t *data, size_t data_len, size_t segment_size, size_t max_segments,
                       uint64_t *seqs, uint8_t *content_types, uint32_t *plaintext_offsets,
                       uint32_t *plaintext_lens, int8_t *status);

/* The engine's receive path for a run of datagrams after the handshake: datagram i is
 * datagram_lens[i] bytes and follows datagram i-1 in data. Datagrams are taken in order
 * while each holds only DTLSCiphertext records (RFC 9147 §4.1, at most 128) with these low
 * epoch bits and the connection ID cid (C=1 and those cid_len bytes; cid_len 0: C=0) and
 * nothing else; their records are opened in place, one entry each in the arrays (as
 * dtls_open_records; at most max_records). The run stops before the first datagram that
 * does not fit (left as it was), and after the first record that opened with a content
 * type other than content_type or a plaintext longer than max_plaintext. The window is
 * required. progress[0..3] receives: datagrams taken whole, records taken, bytes of the
 * records that opened, and the offset in the next datagram where its records not taken
 * begin (0: none of it was taken). Returns the number opened, or DTLS_ERR_ARGUMENT. */
int dtls_open_run(dtls_cipher *c, dtls_replay *window, const uint8_t *cid, size_t cid_len,
                  unsigned epoch_bits, uint8_t content_type, size_t max_plaintext, uint8_t *data,
                  size_t data_len, const uint32_t *datagram_lens, size_t n, size_t max_records,
                  uint64_t *seqs, uint8_t *content_types, uint32_t *plaintext_offsets,
                  uint32_t *plaintext_lens, int8_t *status, uint32_t *progress);

/* ---- buffer pool of datagram-sized slabs ---- */
typedef struct dtls_pool dtls_pool;
typedef struct {
    uint64_t acquired;
    uint64_t released;
    uint64_t misses; /* acquire with no free slab */
    uint32_t in_use;
    uint32_t peak;
    uint32_t capacity;
    uint32_t slab_size;
} dtls_pool_stats;

dtls_pool *dtls_pool_new(size_t slab_size, size_t count);
void dtls_pool_free(dtls_pool *p);
/* Index of a free slab, or -1 (counted as a miss). No allocation. */
int dtls_pool_acquire(dtls_pool *p);
/* 0, or DTLS_ERR_ARGUMENT when idx is not an acquired slab. */
int dtls_pool_release(dtls_pool *p, int idx);
uint8_t *dtls_pool_slab(dtls_pool *p, int idx); /* NULL for a bad index */
void dtls_pool_get_stats(const dtls_pool *p, dtls_pool_stats *stats);

/* ---- batched socket I/O (Linux sendmmsg/recvmmsg, UDP GSO/GRO where offered) ---- */
typedef struct {
    uint8_t *buf;       /* send: data; recv: buffer to fill */
    size_t len;         /* send: data length; recv: capacity, set to bytes received */
    uint8_t addr[28];   /* struct sockaddr_storage prefix: sockaddr_in / sockaddr_in6 */
    uint32_t addr_len;  /* send: length of addr; recv: set */
    uint32_t segment_size; /* recv: set: with UDP_GRO on, the kernel may coalesce datagrams
                            * of one sender: all but the last this long; 0: one datagram */
} dtls_dgram;

/* Send n datagrams on fd; returns how many were sent, or -errno. */
int dtls_sendmmsg(int fd, dtls_dgram *dgrams, size_t n);
/* Receive up to n datagrams without blocking past the first; returns the count, or -errno. */
int dtls_recvmmsg(int fd, dtls_dgram *dgrams, size_t n);
/* 1 when the kernel offers UDP GSO on fd, else 0. */
int dtls_gso_supported(int fd);
/* Send count equal-sized segments (the last may be shorter) from buf to one address with
 * UDP GSO, falling back to sendmmsg when GSO is unavailable. Returns segments sent or -errno. */
int dtls_send_segments(int fd, const uint8_t *buf, size_t len, size_t segment_size,
                       const uint8_t *addr, uint32_t addr_len);

/* UDP GRO (Linux >= 5.0, UDP_GRO): ask the kernel to hand this socket coalesced runs of
 * datagrams from one sender. Returns 1 when the kernel accepted it, else 0 (other systems,
 * old kernels, builds without UDP_GRO). Once on, a receive on fd may return several
 * datagrams back to back: dtls_recvmmsg reports their dtls_dgram.segment_size. */
int dtls_gro_enable(int fd);
/* 1 when the kernel knows UDP_GRO on fd (getsockopt), else 0. */
int dtls_gro_supported(int fd);

/* ---- benchmark support: n iterations inside C, no Python in the loop ---- */
/* The floor: n plain AEAD seals (nonce from iv and the iteration, aad, payload) with c's
 * AEAD context, the same EVP calls dtls_seal makes. Returns 0 or DTLS_ERR_*. */
int dtls_bench_raw_aead_seal(dtls_cipher *c, const uint8_t *aad, size_t aad_len,
                             const uint8_t *payload, size_t payload_len, uint8_t *out,
                             size_t out_cap, uint64_t n);
/* n dtls_seal calls (sequence numbers 0 .. n-1). Returns 0 or DTLS_ERR_*. */
int dtls_bench_seal(dtls_cipher *c, unsigned flags, const uint8_t *payload, size_t payload_len,
                    uint8_t *out, size_t out_cap, uint64_t n);
/* n dtls_open calls of one record (no window: never a replay). Returns 0 or DTLS_ERR_*. */
int dtls_bench_open(dtls_cipher *c, const uint8_t *rec, size_t rec_len, uint8_t *out,
                    size_t out_cap, uint64_t n);
/* What dtls_seal adds to the AEAD, n times: write the unified header, compute the mask from
 * the 16-byte sample and mask the sequence number. Returns 0 or DTLS_ERR_*. */
int dtls_bench_frame_mask(dtls_cipher *c, unsigned flags, uint8_t *out, size_t out_cap,
                          uint64_t n);

#endif
