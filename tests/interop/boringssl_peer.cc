// boringssl_peer: a small DTLS 1.3 client/server built on BoringSSL's public
// API, used as a live interop peer for the dtls13 test suite.
//
// It is not part of the library and nothing in the project builds it. Build
// it out of tree against a BoringSSL build, e.g.
//   g++ -std=c++17 -O2 -I$BORINGSSL/include -o boringssl_peer
//       boringssl_peer.cc $BUILD/libssl.a $BUILD/libcrypto.a -lpthread
// and point the interop tests at the binary through an environment variable.
//
//   boringssl_peer server --port N --cert F --key F [--require-client-cert
//       --cafile F] [--groups G] [--ciphers C] [--mtu N] [--keylog F]
//       [--key-update] [--timeout S] [--once]
//   boringssl_peer client --host 127.0.0.1 --port N --cafile F
//       [--servername S] [--cert F --key F] [--groups G] [--ciphers C]
//       [--mtu N] [--keylog F] [--key-update] [--message TEXT ...]
//       [--sess-out F] [--sess-in F] [--timeout S]
//
// Output (stdout, one line each, flushed):
//   server: "PORT <n>" once, then per client "HANDSHAKE ...", "RECV <text>"
//           for each message it echoes, and "CLOSED" on close_notify.
//   client: "HANDSHAKE version=<v> cipher=<c> group=<g> resumed=<0|1>
//           hrr=<0|1>", "KEYUPDATE" when one is requested, and "REPLY <text>"
//           per record received. Non-printable bytes are written as \xNN.
// Errors go to stderr and give exit status 1.
//
// Only DTLS 1.3 is enabled. The transport is real, non-blocking UDP on
// 127.0.0.1; retransmissions are driven by DTLSv1_get_timeout and
// DTLSv1_handle_timeout in a poll loop. The server reads each new ClientHello
// on an unconnected listening socket, then serves that client (one at a time)
// on its own socket bound to the same port and connected to the client.
//
// --ciphers takes TLS 1.3 suite names separated by ':'. BoringSSL always
// offers and accepts its three TLS 1.3 suites (AES-128-GCM, AES-256-GCM,
// ChaCha20-Poly1305; it has no CCM), so the list only sets the preference:
// the client's offer order, or which suite the server favours. After the
// handshake both sides fail if the negotiated suite is not in the list.

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string mode;
  std::string host = "127.0.0.1";
  int port = -1;
  std::string cert, key, cafile, servername, groups, ciphers, keylog;
  std::string sess_in, sess_out;
  std::vector<std::string> messages;
  bool require_client_cert = false;
  bool once = false;
  bool key_update = false;
  unsigned mtu = 0;
  double timeout = 10;
};

Options g_opts;
FILE *g_keylog = nullptr;
// ICMP "port unreachable" for an earlier datagram shows up as ECONNREFUSED on
// the next send/recv, even with the peer's datagrams still queued (e.g. its
// close_notify). Once a peer exists such errors are soft: keep going. A
// client still fails fast if nobody answers its ClientHello.
bool g_soft_icmp = false;
SSL_SESSION *g_session = nullptr;  // newest ticket seen by the client

bool SoftIcmp(int ssl_err) {
  return g_soft_icmp && ssl_err == SSL_ERROR_SYSCALL && errno == ECONNREFUSED;
}

const char *const kSuites[] = {"TLS_AES_128_GCM_SHA256",
                               "TLS_AES_256_GCM_SHA384",
                               "TLS_CHACHA20_POLY1305_SHA256"};

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

// Prints an error with the BoringSSL error queue and returns false.
bool Fail(const char *what) {
  fprintf(stderr, "boringssl_peer: %s\n", what);
  ERR_print_errors_fp(stderr);
  return false;
}

[[noreturn]] void Die(const std::string &what) {
  Fail(what.c_str());
  exit(1);
}

void Say(const std::string &line) {
  fputs(line.c_str(), stdout);
  fputc('\n', stdout);
  fflush(stdout);
}

// Printable ASCII stays as is; anything else (and '\') becomes \xNN.
std::string Escape(const uint8_t *p, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; i++) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
      out += static_cast<char>(p[i]);
    } else {
      char buf[5];
      snprintf(buf, sizeof(buf), "\\x%02x", p[i]);
      out += buf;
    }
  }
  return out;
}

void KeylogCallback(const SSL *, const char *line) {
  fprintf(g_keylog, "%s\n", line);
  fflush(g_keylog);
}

// Client session cache hook: keep the newest session (ticket) for --sess-out.
int NewSessionCallback(SSL *, SSL_SESSION *session) {
  SSL_SESSION_free(g_session);
  g_session = session;  // we take ownership of the reference
  return 1;
}

// ---------------------------------------------------------------------------
// Event loop

enum class Wait { kReadable, kTimer, kDeadline, kError };

// Waits once for the socket to become readable, the DTLS retransmission timer
// to fire (then lets BoringSSL retransmit), or |deadline| to pass.
Wait WaitOnce(SSL *ssl, int fd, double deadline) {
  double remaining = deadline - Now();
  if (remaining <= 0) return Wait::kDeadline;
  int wait_ms = static_cast<int>(std::ceil(remaining * 1000));
  bool timer = false;
  timeval tv;
  if (DTLSv1_get_timeout(ssl, &tv)) {
    long timer_ms = tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
    if (timer_ms <= wait_ms) {
      wait_ms = static_cast<int>(timer_ms);
      timer = true;
    }
  }
  pollfd pfd = {fd, POLLIN, 0};
  int n = poll(&pfd, 1, wait_ms);
  if (n < 0) return errno == EINTR ? Wait::kTimer : Wait::kError;
  if (n > 0) return Wait::kReadable;
  if (!timer) return Wait::kDeadline;
  if (DTLSv1_handle_timeout(ssl) < 0) return Wait::kError;
  return Wait::kTimer;
}

// Calls |op| (one call into |ssl|) until it makes progress, waiting for
// datagrams and servicing timers in between. Returns op's positive result,
// 0 when the peer sent close_notify, or -1 (already reported) on an error or
// after |timeout| seconds.
template <typename Op>
int Drive(SSL *ssl, int fd, const char *what, Op op) {
  double deadline = Now() + g_opts.timeout;
  for (;;) {
    int ret = op();
    if (ret > 0) return ret;
    int err = SSL_get_error(ssl, ret);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err != SSL_ERROR_WANT_READ && !SoftIcmp(err)) {
      std::string msg = std::string(what) + " failed: " +
                        SSL_error_description(err);
      if (err == SSL_ERROR_SYSCALL) {
        msg += std::string(" (") + strerror(errno) + ")";
      }
      Fail(msg.c_str());
      return -1;
    }
    switch (WaitOnce(ssl, fd, deadline)) {
      case Wait::kReadable:
      case Wait::kTimer:
        break;
      case Wait::kDeadline:
        Fail((std::string(what) + ": timed out").c_str());
        return -1;
      case Wait::kError:
        Fail((std::string(what) + ": retransmission failed").c_str());
        return -1;
    }
  }
}

// Keeps reading (printing any application data as REPLY lines) until
// |done()| holds. Used to wait for a ticket or for outstanding ACKs.
template <typename Pred>
bool PumpUntil(SSL *ssl, int fd, const char *what, Pred done) {
  double deadline = Now() + g_opts.timeout;
  uint8_t buf[16384];
  while (!done()) {
    int ret = SSL_read(ssl, buf, sizeof(buf));
    if (ret > 0) {
      Say("REPLY " + Escape(buf, ret));
      continue;
    }
    int err = SSL_get_error(ssl, ret);
    if (err != SSL_ERROR_WANT_READ && !SoftIcmp(err)) {
      return Fail((std::string(what) + ": connection ended").c_str());
    }
    if (done()) break;  // that read may have been the awaited ACK
    Wait w = WaitOnce(ssl, fd, deadline);
    if (w == Wait::kDeadline || w == Wait::kError) {
      return Fail((std::string(what) + ": timed out").c_str());
    }
  }
  return true;
}

bool NoTimerPending(SSL *ssl) {
  timeval tv;
  return !DTLSv1_get_timeout(ssl, &tv);
}

// Flushes a queued KeyUpdate with a zero-length write.
bool FlushWrites(SSL *ssl) {
  ERR_clear_error();
  int ret = SSL_write(ssl, "", 0);
  if (ret < 0 || ERR_peek_error() != 0) {
    return Fail("flushing KeyUpdate failed");
  }
  return true;
}

bool RequestKeyUpdate(SSL *ssl) {
  if (!SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED)) {
    return Fail("SSL_key_update failed");
  }
  Say("KEYUPDATE");
  return true;
}

// ---------------------------------------------------------------------------
// Configuration shared by both modes

bool SuiteAllowed(const SSL_CIPHER *cipher) {
  if (g_opts.ciphers.empty()) return true;
  std::string name = SSL_CIPHER_standard_name(cipher);
  std::string list = ":" + g_opts.ciphers + ":";
  return list.find(":" + name + ":") != std::string::npos;
}

// Splits --ciphers and checks each name; returns them in order.
std::vector<std::string> ParseSuites() {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= g_opts.ciphers.size()) {
    size_t end = g_opts.ciphers.find(':', start);
    if (end == std::string::npos) end = g_opts.ciphers.size();
    std::string name = g_opts.ciphers.substr(start, end - start);
    bool known = false;
    for (const char *s : kSuites) known |= name == s;
    if (!known) Die("--ciphers: unsupported TLS 1.3 suite '" + name + "'");
    out.push_back(name);
    start = end + 1;
  }
  return out;
}

void ConfigureSuites(SSL_CTX *ctx, bool server) {
  std::vector<std::string> suites = ParseSuites();
  if (server) {
    // The server picks the best-scoring suite the client offers (ties go to
    // the client's order): without AES hardware ChaCha20 scores highest, and
    // the CNSA policy ranks AES-256-GCM over AES-128-GCM over ChaCha20.
    if (suites[0] == "TLS_CHACHA20_POLY1305_SHA256") {
      bssl::SSL_CTX_set_aes_hw_override_for_testing(ctx, false);
    } else if (suites[0] == "TLS_AES_256_GCM_SHA384") {
      SSL_CTX_set_compliance_policy(ctx, ssl_compliance_policy_cnsa_202407);
    } else {
      bssl::SSL_CTX_set_aes_hw_override_for_testing(ctx, true);
    }
    return;
  }
  // Client: this BoringSSL build orders its TLS 1.3 offer by the leading
  // "A:B:C" TLS 1.3 names of the cipher string, so complete the permutation.
  // The string must outlive |ctx| (it is kept by pointer), hence static.
  for (const char *s : kSuites) {
    bool listed = false;
    for (const std::string &t : suites) listed |= t == s;
    if (!listed) suites.push_back(s);
  }
  static std::string order;
  order = suites[0] + ":" + suites[1] + ":" + suites[2] +
          ":ECDHE-ECDSA-AES128-GCM-SHA256";  // keeps the TLS 1.2 list non-empty
  if (!SSL_CTX_set_cipher_list(ctx, order.c_str())) Die("bad --ciphers");
}

SSL_CTX *MakeContext(bool server) {
  SSL_CTX *ctx = SSL_CTX_new(DTLS_method());
  if (ctx == nullptr ||
      !SSL_CTX_set_min_proto_version(ctx, DTLS1_3_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx, DTLS1_3_VERSION)) {
    Die("cannot create a DTLS 1.3 context");
  }
  if (!g_opts.cert.empty() || !g_opts.key.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, g_opts.cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, g_opts.key.c_str(),
                                    SSL_FILETYPE_PEM) != 1 ||
        !SSL_CTX_check_private_key(ctx)) {
      Die("cannot load --cert/--key");
    }
  } else if (server) {
    Die("server needs --cert and --key");
  }
  if (!g_opts.cafile.empty() &&
      !SSL_CTX_load_verify_locations(ctx, g_opts.cafile.c_str(), nullptr)) {
    Die("cannot load --cafile " + g_opts.cafile);
  }
  if (server) {
    if (g_opts.require_client_cert) {
      if (g_opts.cafile.empty()) Die("--require-client-cert needs --cafile");
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         nullptr);
    }
  } else {
    if (g_opts.cafile.empty()) Die("client needs --cafile");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_session_cache_mode(
        ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, NewSessionCallback);
  }
  if (!g_opts.groups.empty() &&
      !SSL_CTX_set1_groups_list(ctx, g_opts.groups.c_str())) {
    Die("bad --groups " + g_opts.groups);
  }
  if (!g_opts.ciphers.empty()) ConfigureSuites(ctx, server);
  if (!g_opts.keylog.empty()) {
    g_keylog = fopen(g_opts.keylog.c_str(), "a");
    if (g_keylog == nullptr) Die("cannot open --keylog " + g_opts.keylog);
    SSL_CTX_set_keylog_callback(ctx, KeylogCallback);
  }
  return ctx;
}

SSL *MakeConnection(SSL_CTX *ctx, int fd) {
  // Non-blocking, so that BoringSSL reports SSL_ERROR_WANT_READ and the
  // event loop (not a blocking recv) does the waiting.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  SSL *ssl = SSL_new(ctx);
  if (ssl == nullptr || !SSL_set_fd(ssl, fd)) Die("SSL_new failed");
  if (g_opts.mtu != 0) {
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    if (!SSL_set_mtu(ssl, g_opts.mtu)) Die("--mtu rejected (minimum 228)");
  }
  return ssl;
}

// Prints the HANDSHAKE line and enforces --ciphers.
bool ReportHandshake(SSL *ssl) {
  const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);
  const char *group = SSL_get_group_name(SSL_get_group_id(ssl));
  Say(std::string("HANDSHAKE version=") + SSL_get_version(ssl) +
      " cipher=" + SSL_CIPHER_standard_name(cipher) +
      " group=" + (group != nullptr ? group : "none") +
      " resumed=" + (SSL_session_reused(ssl) ? "1" : "0") +
      " hrr=" + (SSL_used_hello_retry_request(ssl) ? "1" : "0"));
  if (SSL_version(ssl) != DTLS1_3_VERSION) return Fail("not DTLS 1.3");
  if (!SuiteAllowed(cipher)) return Fail("negotiated suite not in --ciphers");
  return true;
}

// ---------------------------------------------------------------------------
// Server

// Binds a UDP socket to 127.0.0.1:|port| (0 picks one, written back). With
// SO_REUSEADDR the listening socket and the per-client sockets share the port;
// the kernel hands a datagram to the socket connected to its sender, if any.
int BindUdp(uint16_t *port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int one = 1;
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(*port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      bind(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
    Die(std::string("cannot bind 127.0.0.1: ") + strerror(errno));
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// Waits (without a deadline) on the listening socket for a datagram that
// looks like a DTLSPlaintext ClientHello and stores it in |hello|. Returns a
// new socket on the same port, connected to the sender. Other datagrams
// (e.g. late retransmissions from a finished client) are dropped.
int AcceptPeer(int listen_fd, uint16_t port, std::vector<uint8_t> *hello) {
  for (;;) {
    hello->resize(65536);
    sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    ssize_t n = recvfrom(listen_fd, hello->data(), hello->size(), 0,
                         reinterpret_cast<sockaddr *>(&peer), &peer_len);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNREFUSED) continue;
      Die(std::string("recvfrom: ") + strerror(errno));
    }
    // content_type handshake(22), 13-byte record header, msg_type 1.
    const uint8_t *p = hello->data();
    if (n < 14 || p[0] != 22 || p[13] != 1) continue;
    hello->resize(n);
    uint16_t same_port = port;
    int fd = BindUdp(&same_port);
    if (connect(fd, reinterpret_cast<sockaddr *>(&peer), peer_len) != 0) {
      Die(std::string("connect: ") + strerror(errno));
    }
    return fd;
  }
}

// Serves one client: handshake, echo every record, answer close_notify.
bool ServeOne(SSL_CTX *ctx, int fd, const std::vector<uint8_t> &hello) {
  SSL *ssl = MakeConnection(ctx, fd);
  SSL_set_accept_state(ssl);
  // The ClientHello was already read from the listening socket: BoringSSL
  // reads it from a one-shot memory BIO, then reads from the client's socket.
  BIO *first = BIO_new_mem_buf(hello.data(), hello.size());
  BIO_set_mem_eof_return(first, -1);  // "no data yet" rather than EOF
  BIO *sock = SSL_get_rbio(ssl);
  BIO_up_ref(sock);
  SSL_set0_rbio(ssl, first);
  int ret = SSL_do_handshake(ssl);
  int err = SSL_get_error(ssl, ret);  // looks at the current rbio: ask first
  SSL_set0_rbio(ssl, sock);
  bool ok = err == SSL_ERROR_WANT_READ
                ? Drive(ssl, fd, "handshake",
                        [&] { return SSL_do_handshake(ssl); }) > 0
                : Fail("handshake failed on the ClientHello");
  ok = ok && ReportHandshake(ssl);
  uint8_t buf[16384];
  while (ok) {
    int n = Drive(ssl, fd, "read",
                  [&] { return SSL_read(ssl, buf, sizeof(buf)); });
    if (n < 0) {
      ok = false;
    } else if (n == 0) {
      SSL_shutdown(ssl);  // answer with our own close_notify
      Say("CLOSED");
      break;
    } else {
      Say("RECV " + Escape(buf, n));
      ok = (!g_opts.key_update || RequestKeyUpdate(ssl)) &&
           Drive(ssl, fd, "write", [&] { return SSL_write(ssl, buf, n); }) > 0;
    }
  }
  SSL_free(ssl);
  return ok;
}

int RunServer() {
  if (g_opts.port < 0) Die("server needs --port (0 picks a free one)");
  g_soft_icmp = true;
  SSL_CTX *ctx = MakeContext(true);
  uint16_t port = static_cast<uint16_t>(g_opts.port);
  int listen_fd = BindUdp(&port);
  Say("PORT " + std::to_string(port));
  std::vector<uint8_t> hello;
  for (;;) {
    int fd = AcceptPeer(listen_fd, port, &hello);
    bool ok = ServeOne(ctx, fd, hello);
    close(fd);
    if (g_opts.once) return ok ? 0 : 1;
  }
}

// ---------------------------------------------------------------------------
// Client

int ConnectUdp() {
  addrinfo hints = {}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  std::string port = std::to_string(g_opts.port);
  int rc = getaddrinfo(g_opts.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) Die("cannot resolve --host: " + std::string(gai_strerror(rc)));
  int fd = socket(res->ai_family, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    Die(std::string("cannot connect UDP socket: ") + strerror(errno));
  }
  freeaddrinfo(res);
  return fd;
}

bool LoadSession(SSL_CTX *ctx, SSL *ssl) {
  std::ifstream in(g_opts.sess_in, std::ios::binary);
  std::string der((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  SSL_SESSION *session = SSL_SESSION_from_bytes(
      reinterpret_cast<const uint8_t *>(der.data()), der.size(), ctx);
  if (session == nullptr) return Fail("cannot parse --sess-in");
  int ok = SSL_set_session(ssl, session);
  SSL_SESSION_free(session);
  return ok ? true : Fail("SSL_set_session failed");
}

bool SaveSession() {
  uint8_t *der = nullptr;
  size_t der_len = 0;
  if (!SSL_SESSION_to_bytes(g_session, &der, &der_len)) {
    return Fail("SSL_SESSION_to_bytes failed");
  }
  std::ofstream out(g_opts.sess_out, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char *>(der), der_len);
  OPENSSL_free(der);
  return out.good() ? true : Fail("cannot write --sess-out");
}

bool RunClientConnection(SSL_CTX *ctx, SSL *ssl, int fd) {
  if (!g_opts.servername.empty() &&
      (!SSL_set_tlsext_host_name(ssl, g_opts.servername.c_str()) ||
       !SSL_set1_host(ssl, g_opts.servername.c_str()))) {
    return Fail("bad --servername");
  }
  if (!g_opts.sess_in.empty() && !LoadSession(ctx, ssl)) return false;
  SSL_set_connect_state(ssl);
  if (Drive(ssl, fd, "handshake", [&] { return SSL_do_handshake(ssl); }) <= 0 ||
      !ReportHandshake(ssl)) {
    return false;
  }
  g_soft_icmp = true;

  // A KeyUpdate (update_requested) goes before each message; BoringSSL sends
  // it with the next write, or once the peer has ACKed our last flight.
  for (const std::string &msg : g_opts.messages) {
    if (g_opts.key_update && !RequestKeyUpdate(ssl)) return false;
    if (Drive(ssl, fd, "write", [&] {
          return SSL_write(ssl, msg.data(), static_cast<int>(msg.size()));
        }) <= 0) {
      return false;
    }
    uint8_t buf[16384];
    int n = Drive(ssl, fd, "read",
                  [&] { return SSL_read(ssl, buf, sizeof(buf)); });
    if (n <= 0) return n == 0 ? Fail("peer closed before replying") : false;
    Say("REPLY " + Escape(buf, n));
  }
  if (g_opts.key_update) {
    if (g_opts.messages.empty() &&
        (!RequestKeyUpdate(ssl) || !FlushWrites(ssl))) {
      return false;
    }
    // Wait until nothing is left unacknowledged (our KeyUpdate included).
    if (!PumpUntil(ssl, fd, "waiting for ACKs",
                   [&] { return NoTimerPending(ssl); })) {
      return false;
    }
  }
  if (!g_opts.sess_out.empty()) {
    if (!PumpUntil(ssl, fd, "waiting for a ticket",
                   [] { return g_session != nullptr; }) ||
        !SaveSession()) {
      return false;
    }
  }
  if (SSL_shutdown(ssl) < 0) return Fail("sending close_notify failed");
  return true;
}

int RunClient() {
  if (g_opts.port <= 0) Die("client needs --port");
  SSL_CTX *ctx = MakeContext(false);
  int fd = ConnectUdp();
  SSL *ssl = MakeConnection(ctx, fd);
  bool ok = RunClientConnection(ctx, ssl, fd);
  SSL_free(ssl);
  close(fd);
  return ok ? 0 : 1;
}

// ---------------------------------------------------------------------------

void Usage() {
  fputs(
      "usage: boringssl_peer server --port N --cert F --key F\n"
      "         [--require-client-cert --cafile F] [--groups G] [--ciphers C]\n"
      "         [--mtu N] [--keylog F] [--key-update] [--timeout S] [--once]\n"
      "       boringssl_peer client --host H --port N --cafile F\n"
      "         [--servername S] [--cert F --key F] [--groups G]\n"
      "         [--ciphers C] [--mtu N] [--keylog F] [--key-update]\n"
      "         [--message TEXT ...]"
      " [--sess-out F] [--sess-in F] [--timeout S]\n",
      stderr);
  exit(2);
}

void ParseArgs(int argc, char **argv) {
  if (argc < 2) Usage();
  g_opts.mode = argv[1];
  if (g_opts.mode != "server" && g_opts.mode != "client") Usage();
  for (int i = 2; i < argc; i++) {
    std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(flag + " needs a value");
      return argv[++i];
    };
    if (flag == "--host") g_opts.host = value();
    else if (flag == "--port") g_opts.port = atoi(value().c_str());
    else if (flag == "--cert") g_opts.cert = value();
    else if (flag == "--key") g_opts.key = value();
    else if (flag == "--cafile") g_opts.cafile = value();
    else if (flag == "--servername") g_opts.servername = value();
    else if (flag == "--groups") g_opts.groups = value();
    else if (flag == "--ciphers") g_opts.ciphers = value();
    else if (flag == "--keylog") g_opts.keylog = value();
    else if (flag == "--sess-in") g_opts.sess_in = value();
    else if (flag == "--sess-out") g_opts.sess_out = value();
    else if (flag == "--message") g_opts.messages.push_back(value());
    else if (flag == "--mtu") g_opts.mtu = atoi(value().c_str());
    else if (flag == "--timeout") g_opts.timeout = atof(value().c_str());
    else if (flag == "--require-client-cert") g_opts.require_client_cert = true;
    else if (flag == "--once") g_opts.once = true;
    else if (flag == "--key-update") g_opts.key_update = true;
    else Die("unknown flag " + flag);
  }
  if (g_opts.timeout <= 0) Die("--timeout must be positive");
}

}  // namespace

int main(int argc, char **argv) {
  ParseArgs(argc, argv);
  return g_opts.mode == "server" ? RunServer() : RunClient();
}
