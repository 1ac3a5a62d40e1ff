/* batch.c - batched UDP I/O: sendmmsg/recvmmsg, UDP GSO and UDP GRO on Linux, plain
 * sendto/recvfrom loops on other POSIX systems, -ENOSYS elsewhere; and sealing/opening
 * records at a fixed stride for those GSO/GRO buffers.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sendmmsg, recvmmsg, MSG_WAITFORONE */
#endif

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dtls_internal.h" /* DTLS_MAX_SEQ, DTLS_MAX_CID */
#include "dtls_native.h"

#if defined(__unix__) || defined(__APPLE__)
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#define DTLS_POSIX 1
#endif

#if defined(__linux__)
#include <netinet/udp.h>
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, Linux >= 4.18 */
#endif
#if !defined(UDP_GRO) && !defined(DTLS_NO_GRO)
#define UDP_GRO 104 /* linux/udp.h, Linux >= 5.0; older kernels refuse it at run time */
#endif
#if defined(UDP_GRO) && !defined(DTLS_NO_GRO)
#define DTLS_GRO 1
#endif
#define DTLS_MMSG 1
#endif

#define BATCH_CHUNK 64     /* messages per system call */
#define GSO_MAX_SEGMENTS 64 /* UDP_MAX_SEGMENTS of older kernels */
#define ADDR_CAP 28        /* sizeof(struct sockaddr_in6) */
#define GSO_MAX_BYTES 65000u /* below the 65507-byte UDP payload limit */
#define GRO_CONTROL 128    /* cmsg space per message: UDP_GRO and a few others */

#if defined(DTLS_POSIX)

static int valid_dgrams(const dtls_dgram *d, size_t n)
{
    if (d == NULL)
        return n == 0;
    return 1;
}

#if defined(DTLS_MMSG)

/* The segment size of the UDP_GRO cmsg (an int from the kernel), 0 when there is none. */
static uint32_t gro_segment_size(struct msghdr *m)
{
#if defined(DTLS_GRO)
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm != NULL; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level != SOL_UDP || cm->cmsg_type != UDP_GRO)
            continue;
        if (cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int v;
            memcpy(&v, CMSG_DATA(cm), sizeof(v));
            return v > 0 ? (uint32_t)v : 0;
        }
        if (cm->cmsg_len >= CMSG_LEN(sizeof(uint16_t))) {
            uint16_t v;
            memcpy(&v, CMSG_DATA(cm), sizeof(v));
            return v;
        }
    }
#else
    (void)m;
#endif
    return 0;
}

int dtls_sendmmsg(int fd, dtls_dgram *dgrams, size_t n)
{
    struct mmsghdr msgs[BATCH_CHUNK];
    struct iovec iov[BATCH_CHUNK];
    size_t done = 0;
    if (!valid_dgrams(dgrams, n))
        return -EINVAL;
    while (done < n) {
        size_t k = n - done < BATCH_CHUNK ? n - done : BATCH_CHUNK;
        memset(msgs, 0, k * sizeof(msgs[0]));
        for (size_t i = 0; i < k; i++) {
            dtls_dgram *d = &dgrams[done + i];
            if (d->addr_len > ADDR_CAP || (d->buf == NULL && d->len > 0))
                return done > 0 ? (int)done : -EINVAL;
            iov[i].iov_base = d->buf;
            iov[i].iov_len = d->len;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = d->addr_len > 0 ? d->addr : NULL;
            msgs[i].msg_hdr.msg_namelen = d->addr_len;
        }
        int r;
        do {
            r = sendmmsg(fd, msgs, (unsigned)k, 0);
        } while (r < 0 && errno == EINTR);
        if (r < 0)
            return done > 0 ? (int)done : -errno;
        done += (size_t)r;
        if ((size_t)r < k)
            break; /* the socket buffer is full */
    }
    return (int)done;
}

/* One recvmmsg of k messages, blocking (if the socket blocks) for the first message of a
 * receive only (done == 0). Returns the count (0: nothing more after `done` were already
 * received), or -errno. */
static int recv_chunk(int fd, struct mmsghdr *mm, size_t k, size_t done)
{
    int r;
    do {
        r = recvmmsg(fd, mm, (unsigned)k, done == 0 ? MSG_WAITFORONE : MSG_DONTWAIT, NULL);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && done > 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return r < 0 ? -errno : r;
}

int dtls_recvmmsg(int fd, dtls_dgram *dgrams, size_t n)
{
    struct mmsghdr msgs[BATCH_CHUNK];
    struct iovec iov[BATCH_CHUNK];
    union {
        char buf[GRO_CONTROL];
        struct cmsghdr align;
    } control[BATCH_CHUNK];
    size_t done = 0;
    if (!valid_dgrams(dgrams, n))
        return -EINVAL;
    while (done < n) {
        size_t k = n - done < BATCH_CHUNK ? n - done : BATCH_CHUNK;
        memset(msgs, 0, k * sizeof(msgs[0]));
        for (size_t i = 0; i < k; i++) {
            dtls_dgram *d = &dgrams[done + i];
            if (d->buf == NULL && d->len > 0)
                return done > 0 ? (int)done : -EINVAL;
            iov[i].iov_base = d->buf;
            iov[i].iov_len = d->len;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = d->addr;
            msgs[i].msg_hdr.msg_namelen = ADDR_CAP;
            msgs[i].msg_hdr.msg_control = control[i].buf;
            msgs[i].msg_hdr.msg_controllen = sizeof(control[i].buf);
        }
        int r = recv_chunk(fd, msgs, k, done);
        if (r < 0)
            return done > 0 ? (int)done : r;
        for (int i = 0; i < r; i++) {
            dtls_dgram *d = &dgrams[done + (size_t)i];
            d->len = msgs[i].msg_len < d->len ? msgs[i].msg_len : d->len;
            d->addr_len = msgs[i].msg_hdr.msg_namelen <= ADDR_CAP
                              ? (uint32_t)msgs[i].msg_hdr.msg_namelen
                              : ADDR_CAP;
            uint32_t seg = gro_segment_size(&msgs[i].msg_hdr); /* with UDP_GRO on */
            d->segment_size = seg < d->len ? seg : 0;
        }
        done += (size_t)r;
        if ((size_t)r < k)
            break;
    }
    return (int)done;
}

int dtls_gso_supported(int fd)
{
    int val = 0;
    socklen_t len = sizeof(val);
    return getsockopt(fd, SOL_UDP, UDP_SEGMENT, &val, &len) == 0;
}

static int send_gso(int fd, const uint8_t *buf, size_t len, size_t seg, const uint8_t *addr,
                    uint32_t addr_len)
{
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = (void *)(uintptr_t)buf, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    memset(&control, 0, sizeof(control));
    msg.msg_name = addr_len > 0 ? (void *)(uintptr_t)addr : NULL;
    msg.msg_namelen = addr_len;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof(control.buf);
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t gso_size = (uint16_t)seg;
    memcpy(CMSG_DATA(cm), &gso_size, sizeof(gso_size));
    ssize_t r;
    do {
        r = sendmsg(fd, &msg, 0);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

#else /* POSIX without sendmmsg/recvmmsg */

int dtls_sendmmsg(int fd, dtls_dgram *dgrams, size_t n)
{
    size_t done = 0;
    if (!valid_dgrams(dgrams, n))
        return -EINVAL;
    for (; done < n; done++) {
        dtls_dgram *d = &dgrams[done];
        if (d->addr_len > ADDR_CAP || (d->buf == NULL && d->len > 0))
            return done > 0 ? (int)done : -EINVAL;
        ssize_t r;
        do {
            r = sendto(fd, d->buf, d->len, 0,
                       d->addr_len > 0 ? (const struct sockaddr *)(const void *)d->addr : NULL,
                       (socklen_t)d->addr_len);
        } while (r < 0 && errno == EINTR);
        if (r < 0)
            return done > 0 ? (int)done : -errno;
    }
    return (int)done;
}

int dtls_recvmmsg(int fd, dtls_dgram *dgrams, size_t n)
{
    size_t done = 0;
    if (!valid_dgrams(dgrams, n))
        return -EINVAL;
    for (; done < n; done++) {
        dtls_dgram *d = &dgrams[done];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        ssize_t r;
        do {
            r = recvfrom(fd, d->buf, d->len, done == 0 ? 0 : MSG_DONTWAIT,
                         (struct sockaddr *)&ss, &sl);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (done > 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            return done > 0 ? (int)done : -errno;
        }
        d->len = (size_t)r < d->len ? (size_t)r : d->len;
        d->addr_len = sl <= ADDR_CAP ? (uint32_t)sl : ADDR_CAP;
        d->segment_size = 0; /* no UDP_GRO here */
        memcpy(d->addr, &ss, d->addr_len);
    }
    return (int)done;
}

int dtls_gso_supported(int fd)
{
    (void)fd;
    return 0;
}

#endif /* DTLS_MMSG */

int dtls_send_segments(int fd, const uint8_t *buf, size_t len, size_t segment_size,
                       const uint8_t *addr, uint32_t addr_len)
{
    if ((buf == NULL && len > 0) || segment_size == 0 || segment_size > UINT16_MAX ||
        addr_len > ADDR_CAP || (addr == NULL && addr_len > 0))
        return -EINVAL;
    size_t count = (len + segment_size - 1) / segment_size;
    if (count == 0)
        return 0;
#if defined(DTLS_MMSG)
    if (count > 1 && dtls_gso_supported(fd)) {
        /* UDP GSO (Linux >= 4.18): one send, the kernel cuts it into segments */
        size_t sent = 0;
        while (sent < count) {
            size_t k = count - sent < GSO_MAX_SEGMENTS ? count - sent : GSO_MAX_SEGMENTS;
            if (k > GSO_MAX_BYTES / segment_size)
                k = GSO_MAX_BYTES / segment_size; /* one UDP datagram's worth */
            if (k < 2)
                break;
            size_t off = sent * segment_size;
            size_t chunk = k * segment_size <= len - off ? k * segment_size : len - off;
            int r = send_gso(fd, buf + off, chunk, segment_size, addr, addr_len);
            if (r < 0) {
                if (sent > 0)
                    return (int)sent;
                if (r == -EIO || r == -EINVAL || r == -ENOPROTOOPT || r == -EOPNOTSUPP)
                    break; /* GSO refused (e.g. no checksum offload): fall back */
                return r;
            }
            sent += k;
        }
        if (sent == count)
            return (int)count;
    }
#endif
    /* Fallback: one datagram per segment through dtls_sendmmsg. */
    size_t sent = 0;
    while (sent < count) {
        dtls_dgram d[BATCH_CHUNK];
        size_t k = count - sent < BATCH_CHUNK ? count - sent : BATCH_CHUNK;
        for (size_t i = 0; i < k; i++) {
            size_t off = (sent + i) * segment_size;
            d[i].buf = (uint8_t *)(uintptr_t)(buf + off);
            d[i].len = len - off < segment_size ? len - off : segment_size;
            memset(d[i].addr, 0, sizeof(d[i].addr));
            if (addr_len > 0)
                memcpy(d[i].addr, addr, addr_len);
            d[i].addr_len = addr_len;
        }
        int r = dtls_sendmmsg(fd, d, k);
        if (r < 0)
            return sent > 0 ? (int)sent : r;
        sent += (size_t)r;
        if ((size_t)r < k)
            break;
    }
    return (int)sent;
}

#else /* not POSIX */

int dtls_sendmmsg(int fd, dtls_dgram *dgrams, size_t n)
{
    (void)fd, (void)dgrams, (void)n;
    return -ENOSYS;
}

int dtls_recvmmsg(int fd, dtls_dgram *dgrams, size_t n)
{
    (void)fd, (void)dgrams, (void)n;
    return -ENOSYS;
}

int dtls_gso_supported(int fd)
{
    (void)fd;
    return 0;
}

int dtls_send_segments(int fd, const uint8_t *buf, size_t len, size_t segment_size,
                       const uint8_t *addr, uint32_t addr_len)
{
    (void)fd, (void)buf, (void)len, (void)segment_size, (void)addr, (void)addr_len;
    return -ENOSYS;
}

#endif

/* ---- the UDP_GRO switch (Linux >= 5.0); 0 wherever there is none ---- */

int dtls_gro_enable(int fd)
{
#if defined(DTLS_GRO)
    int on = 1;
    return setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
#else
    (void)fd;
    return 0;
#endif
}

int dtls_gro_supported(int fd)
{
#if defined(DTLS_GRO)
    int val = 0;
    socklen_t len = sizeof(val);
    return getsockopt(fd, SOL_UDP, UDP_GRO, &val, &len) == 0;
#else
    (void)fd;
    return 0;
#endif
}

/* ---- records at a fixed stride: one per UDP_SEGMENT / UDP_GRO segment ---- */

static int overlaps(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return x < y + blen && y < x + alen;
}

int dtls_seal_segments(dtls_cipher *c, uint64_t epoch, uint64_t seq, unsigned flags,
                       const uint8_t *cid, size_t cid_len, uint8_t content_type,
                       const uint8_t *data, size_t data_len, size_t payload_len, size_t padding,
                       uint8_t *out, size_t out_cap, uint32_t *segment_size)
{
    if (c == NULL || payload_len == 0 || (data == NULL && data_len > 0))
        return DTLS_ERR_ARGUMENT;
    /* every record but the last is this long: the GSO segment size */
    size_t stride = dtls_sealed_len(c, flags, cid_len, payload_len, padding);
    if (stride == 0)
        return DTLS_ERR_ARGUMENT;
    if (segment_size != NULL)
        *segment_size = (uint32_t)stride;
    if (data_len == 0)
        return 0;
    size_t count = (data_len - 1) / payload_len + 1;
    size_t last_payload = data_len - (count - 1) * payload_len;
    size_t last = dtls_sealed_len(c, flags, cid_len, last_payload, padding); /* <= stride */
    if (last == 0 || last > stride)
        return DTLS_ERR_ARGUMENT;
    /* RFC 9147 §4: 48-bit sequence numbers, none reused */
    if (seq > DTLS_MAX_SEQ || count - 1 > DTLS_MAX_SEQ - seq)
        return DTLS_ERR_ARGUMENT;
    if (count - 1 > ((size_t)INT32_MAX - last) / stride)
        return DTLS_ERR_ARGUMENT; /* the total must fit the int result */
    size_t total = (count - 1) * stride + last;
    if (out == NULL)
        return DTLS_ERR_ARGUMENT;
    if (out_cap < total)
        return DTLS_ERR_BUFFER;
    if (overlaps(data, data_len, out, total))
        return DTLS_ERR_ARGUMENT;
    /* dtls_seal checks the remaining arguments on the first record, before it writes */
    for (size_t i = 0; i < count; i++) {
        size_t off = i * stride;
        size_t plen = i + 1 < count ? payload_len : last_payload;
        int r = dtls_seal(c, epoch, seq + i, flags, cid, cid_len, content_type,
                          data + i * payload_len, plen, padding, out + off, out_cap - off);
        if (r < 0)
            return r;
        if ((size_t)r != (i + 1 < count ? stride : last))
            return DTLS_ERR_ARGUMENT; /* not reached: dtls_sealed_len is dtls_seal's length */
    }
    return (int)total;
}

int dtls_open_segments(dtls_cipher *c, dtls_replay *window, uint64_t next_seq, size_t cid_len,
                       uint8_t *data, size_t data_len, size_t segment_size, size_t max_segments,
                       uint64_t *seqs, uint8_t *content_types, uint32_t *plaintext_offsets,
                       uint32_t *plaintext_lens, int8_t *status)
{
    if (c == NULL || (data == NULL && data_len > 0) || cid_len > DTLS_MAX_CID ||
        data_len > UINT32_MAX)
        return DTLS_ERR_ARGUMENT;
    if (data_len == 0)
        return 0;
    /* UDP_GRO: segments of segment_size, the last may be shorter; 0: one datagram */
    size_t seg = segment_size == 0 || segment_size > data_len ? data_len : segment_size;
    size_t count = (data_len - 1) / seg + 1;
    if (count > max_segments || count > INT32_MAX || seqs == NULL || content_types == NULL ||
        plaintext_offsets == NULL || plaintext_lens == NULL || status == NULL)
        return DTLS_ERR_ARGUMENT;
    const dtls__open_columns out = {seqs, content_types, plaintext_offsets, plaintext_lens, status};
    uint64_t next = next_seq;
    int ok = 0;
    for (size_t i = 0; i < count; i++) {
        size_t off = i * seg;
        size_t len = data_len - off < seg ? data_len - off : seg;
        uint8_t *rec = data + off;
        /* exactly one DTLSCiphertext record (RFC 9147 §4.1), else untouched and MALFORMED */
        dtls_record_span spans[2];
        size_t dropped = 0;
        int found = dtls_split_datagram(rec, len, cid_len, spans, 2, &dropped);
        dtls_open_result res;
        int rc = DTLS_ERR_MALFORMED;
        if (found == 1 && dropped == 0 && spans[0].kind == DTLS_RECORD_CIPHERTEXT)
            rc = dtls_open_in_place(c, window, next, rec, len, cid_len, &res);
        ok += dtls__store_opened(&out, i, off, rc, &res, &next);
    }
    return ok;
}

#define RUN_MAX_SPANS 128 /* records per datagram on the run path; more take the general one */

int dtls_open_run(dtls_cipher *c, dtls_replay *window, const uint8_t *cid, size_t cid_len,
                  unsigned epoch_bits, uint8_t content_type, size_t max_plaintext, uint8_t *data,
                  size_t data_len, const uint32_t *datagram_lens, size_t n, size_t max_records,
                  uint64_t *seqs, uint8_t *content_types, uint32_t *plaintext_offsets,
                  uint32_t *plaintext_lens, int8_t *status, uint32_t *progress)
{
    if (progress == NULL)
        return DTLS_ERR_ARGUMENT;
    memset(progress, 0, 4 * sizeof(*progress));
    if (n == 0)
        return 0;
    if (c == NULL || window == NULL || data == NULL || datagram_lens == NULL || seqs == NULL ||
        content_types == NULL || plaintext_offsets == NULL || plaintext_lens == NULL ||
        status == NULL || max_records > INT32_MAX || data_len > UINT32_MAX ||
        cid_len > DTLS_MAX_CID || (cid == NULL && cid_len > 0) || epoch_bits > 3)
        return DTLS_ERR_ARGUMENT;
    const dtls__open_columns out = {seqs, content_types, plaintext_offsets, plaintext_lens, status};
    /* C=1 with our CID when one is in use, else C=0 (RFC 9147 §9) */
    const unsigned want = 0x20u | (cid_len > 0 ? 0x10u : 0u) | epoch_bits;
    dtls_record_span spans[RUN_MAX_SPANS];
    size_t pos = 0, r = 0, opened_bytes = 0;
    uint64_t next = 0;
    int ok = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = datagram_lens[i];
        if (len > data_len - pos)
            return DTLS_ERR_ARGUMENT;
        uint8_t *dgram = data + pos;
        /* DTLSCiphertext records only (RFC 9147 §4.1), all of this epoch and CID, filling
         * the datagram; else the run ends before it, untouched */
        size_t dropped = 0;
        int found = dtls_split_datagram(dgram, len, cid_len, spans, RUN_MAX_SPANS, &dropped);
        if (found <= 0 || dropped != 0 || (size_t)found > max_records - r)
            break;
        int fits = 1;
        for (int k = 0; k < found && fits; k++) {
            const uint8_t *rec = dgram + spans[k].offset;
            fits = spans[k].kind == DTLS_RECORD_CIPHERTEXT && (rec[0] & 0xF3u) == want &&
                   (cid_len == 0 || memcmp(rec + 1, cid, cid_len) == 0);
        }
        if (!fits)
            break;
        for (int k = 0; k < found; k++) {
            dtls_open_result res;
            size_t at = pos + spans[k].offset;
            int rc = dtls_open_in_place(c, window, next, data + at, spans[k].length, cid_len,
                                        &res);
            ok += dtls__store_opened(&out, r++, at, rc, &res, &next);
            if (rc == 0)
                opened_bytes += spans[k].length;
            /* the caller handles any other content before what follows it */
            if (rc == 0 && (res.content_type != content_type || res.plaintext_len > max_plaintext)) {
                progress[0] = (uint32_t)(k + 1 == found ? i + 1 : i);
                progress[3] = k + 1 == found ? 0 : spans[k + 1].offset;
                progress[1] = (uint32_t)r;
                progress[2] = (uint32_t)opened_bytes;
                return ok;
            }
        }
        pos += len;
        progress[0] = (uint32_t)(i + 1);
    }
    progress[1] = (uint32_t)r;
    progress[2] = (uint32_t)opened_bytes;
    return ok;
}
