/* batch.c - batched UDP I/O: sendmmsg/recvmmsg and UDP GSO on Linux, plain
 * sendto/recvfrom loops on other POSIX systems, -ENOSYS elsewhere.
 */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sendmmsg, recvmmsg, MSG_WAITFORONE */
#endif

#include <errno.h>
#include <stddef.h>
#include <string.h>

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
#define DTLS_MMSG 1
#endif

#define BATCH_CHUNK 64     /* messages per system call */
#define GSO_MAX_SEGMENTS 64 /* UDP_MAX_SEGMENTS of older kernels */
#define ADDR_CAP 28        /* sizeof(struct sockaddr_in6) */
#define GSO_MAX_BYTES 65000u /* below the 65507-byte UDP payload limit */

#if defined(DTLS_POSIX)

static int valid_dgrams(const dtls_dgram *d, size_t n)
{
    if (d == NULL)
        return n == 0;
    return 1;
}

#if defined(DTLS_MMSG)

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

int dtls_recvmmsg(int fd, dtls_dgram *dgrams, size_t n)
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
            if (d->buf == NULL && d->len > 0)
                return done > 0 ? (int)done : -EINVAL;
            iov[i].iov_base = d->buf;
            iov[i].iov_len = d->len;
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = d->addr;
            msgs[i].msg_hdr.msg_namelen = ADDR_CAP;
        }
        /* Block (if the socket blocks) for the first datagram only. */
        int flags = done == 0 ? MSG_WAITFORONE : MSG_DONTWAIT;
        int r;
        do {
            r = recvmmsg(fd, msgs, (unsigned)k, flags, NULL);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (done > 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            return done > 0 ? (int)done : -errno;
        }
        for (int i = 0; i < r; i++) {
            dtls_dgram *d = &dgrams[done + (size_t)i];
            d->len = msgs[i].msg_len < d->len ? msgs[i].msg_len : d->len;
            d->addr_len = msgs[i].msg_hdr.msg_namelen <= ADDR_CAP
                              ? (uint32_t)msgs[i].msg_hdr.msg_namelen
                              : ADDR_CAP;
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
