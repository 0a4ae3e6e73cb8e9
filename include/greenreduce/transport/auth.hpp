// greenreduce/transport/auth.hpp — shared-secret peer authentication of TCP connections.
//
// With a secret (tcp_options::secret, from GREENREDUCE_SECRET or the file named
// by GREENREDUCE_SECRET_FILE) every TCP connection of a job, the mesh's data
// connections and the rendezvous store's alike, opens with a mutual
// challenge-response before anything else on it is parsed (RFC 2104 HMAC over
// SHA-256, the pattern of RFC 1994's CHAP with fresh nonces on both sides):
//
//   both sides -> challenge (48 bytes): magic "GRAC" u32 | version u16 | role u16 |
//                 rank u32 | zero u32 | nonce[32] (RAND_bytes)
//   dialer     -> proof_d = HMAC-SHA256(secret, "greenreduce auth 1 dialer" | chal_d | chal_a)
//   acceptor      checks proof_d (CRYPTO_memcmp), and only then
//              -> proof_a = HMAC-SHA256(secret, "greenreduce auth 1 acceptor" | chal_d | chal_a)
//   dialer        checks proof_a.
//
// Invariants: both nonces are fresh per connection, so a recorded exchange
// cannot be replayed; the two labels differ, so a proof cannot be reflected to
// its sender; roles and ranks are inside the MACed challenges, so a peer
// cannot later claim another rank (the mesh checks the hello's rank against
// the authenticated one); an acceptor answers a wrong proof by closing the
// connection, so a stranger learns nothing but a nonce. The secret proves
// membership of the job; it does not encrypt or sign the frames that follow.
//
// OpenSSL is optional: the CMake target defines GREENREDUCE_WITH_OPENSSL and
// links OpenSSL::Crypto when it is found. Without it, asking for a secret is
// a config_error that names the missing support.
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#if defined(GREENREDUCE_WITH_OPENSSL)
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#endif

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include "greenreduce/core/bytes.hpp"
#include "greenreduce/core/env.hpp"
#include "greenreduce/core/error.hpp"

namespace greenreduce::transport {

namespace detail {
using greenreduce::detail::str;
}  // namespace detail

/// True when this build can authenticate peers (OpenSSL was found).
inline constexpr bool auth_supported =
#if defined(GREENREDUCE_WITH_OPENSSL)
    true;
#else
    false;
#endif

/// The job's shared secret from the environment, or "" when none is set:
///   GREENREDUCE_SECRET       the secret itself
///   GREENREDUCE_SECRET_FILE  a file holding it (trailing newlines dropped); the
///                            file must not be readable or writable by others
///                            (chmod 600), else config_error
/// Setting both, an empty file or an unreadable one is a config_error.
inline std::string secret_from_env(const env_source& env = env_source::process()) {
  const auto inline_secret = env.get("GREENREDUCE_SECRET");
  const auto file = env.get("GREENREDUCE_SECRET_FILE");
  if (inline_secret && file)
    throw config_error(
        "GREENREDUCE_SECRET and GREENREDUCE_SECRET_FILE are both set: set only one of them");
  if (inline_secret) return *inline_secret;
  if (!file) return {};
  struct stat st {};
  if (::stat(file->c_str(), &st) != 0)
    throw config_error(
        detail::str("GREENREDUCE_SECRET_FILE=\"", *file, "\" cannot be read: no such file"));
  if (!S_ISREG(st.st_mode))
    throw config_error(
        detail::str("GREENREDUCE_SECRET_FILE=\"", *file, "\" is not a regular file"));
  if ((st.st_mode & (S_IROTH | S_IWOTH)) != 0)
    throw config_error(detail::str("GREENREDUCE_SECRET_FILE=\"", *file, "\" has mode 0", std::oct,
                                   (st.st_mode & 0777),
                                   ": other users can read or write it; chmod 600 it"));
  std::ifstream in(*file, std::ios::binary);
  if (!in)
    throw config_error(detail::str("GREENREDUCE_SECRET_FILE=\"", *file, "\" cannot be opened"));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty())
    throw config_error(detail::str("GREENREDUCE_SECRET_FILE=\"", *file, "\" holds no secret"));
  return s;
}

/// The wire format and arithmetic of the exchange in the header comment.
namespace auth_wire {

inline constexpr std::uint32_t magic = 0x43415247U;  // "GRAC" read little-endian
inline constexpr std::uint16_t version = 1;
inline constexpr std::size_t nonce_bytes = 32;
inline constexpr std::size_t challenge_bytes = 16 + nonce_bytes;
inline constexpr std::size_t proof_bytes = 32;  // SHA-256
/// Rank of a connection that has none (a store client that does not say).
inline constexpr std::uint32_t no_rank = 0xffffffffU;

/// What a connection is for; a challenge of the wrong role is refused.
enum class role : std::uint16_t { mesh = 1, store = 2 };

using challenge = std::array<std::byte, challenge_bytes>;
using proof = std::array<std::byte, proof_bytes>;

struct challenge_fields {
  role kind = role::mesh;
  std::uint32_t rank = no_rank;
};

/// Parses a peer's challenge; decode_error saying what is wrong.
inline challenge_fields parse_challenge(std::span<const std::byte, challenge_bytes> b,
                                        role expect) {
  if (const auto m = load_le<std::uint32_t>(b.data()); m != magic)
    throw decode_error(detail::str("auth: bad challenge magic 0x", std::hex, m, " (expected 0x",
                                   magic, "; does the peer have the job's secret set?)"));
  if (const auto v = load_le<std::uint16_t>(b.data() + 4); v != version)
    throw decode_error(detail::str("auth: protocol version ", v, " (expected ", version, ")"));
  const auto r = load_le<std::uint16_t>(b.data() + 6);
  if (r != static_cast<std::uint16_t>(expect))
    throw decode_error(detail::str("auth: challenge for role ", r, " (expected ",
                                   static_cast<std::uint16_t>(expect), ")"));
  if (load_le<std::uint32_t>(b.data() + 12) != 0)
    throw decode_error("auth: reserved challenge word must be zero");
  return {expect, load_le<std::uint32_t>(b.data() + 8)};
}

}  // namespace auth_wire

/// A job's secret, ready to prove and check connections. Copies share nothing
/// mutable; construction fails with config_error when the build has no
/// OpenSSL support or the secret is empty.
class peer_auth {
 public:
  explicit peer_auth(std::string_view secret) : key_(secret.begin(), secret.end()) {
    if (key_.empty()) throw config_error("peer authentication needs a non-empty secret");
    if constexpr (!auth_supported)
      throw config_error(
          "a shared secret (GREENREDUCE_SECRET / GREENREDUCE_SECRET_FILE) is set, but this build "
          "of greenreduce has no OpenSSL support: install libssl-dev and rebuild so that CMake "
          "finds OpenSSL::Crypto (compile definition GREENREDUCE_WITH_OPENSSL)");
  }

  /// This side's challenge with a fresh random nonce.
  auth_wire::challenge make_challenge(auth_wire::role r, std::uint32_t rank) const {
    auth_wire::challenge c{};
    store_le<std::uint32_t>(c.data(), auth_wire::magic);
    store_le<std::uint16_t>(c.data() + 4, auth_wire::version);
    store_le<std::uint16_t>(c.data() + 6, static_cast<std::uint16_t>(r));
    store_le<std::uint32_t>(c.data() + 8, rank);
#if defined(GREENREDUCE_WITH_OPENSSL)
    if (RAND_bytes(reinterpret_cast<unsigned char*>(c.data() + 16),
                   static_cast<int>(auth_wire::nonce_bytes)) != 1)
      throw config_error("auth: RAND_bytes could not produce a nonce");
#endif
    return c;
  }

  /// The proof of the dialer (`dialer` true) or acceptor of one exchange.
  auth_wire::proof prove(bool dialer, const auth_wire::challenge& of_dialer,
                         const auth_wire::challenge& of_acceptor) const {
    static constexpr std::string_view label_d = "greenreduce auth 1 dialer";
    static constexpr std::string_view label_a = "greenreduce auth 1 acceptor";
    const std::string_view label = dialer ? label_d : label_a;
    std::array<std::byte, label_a.size() + 2 * auth_wire::challenge_bytes> msg{};
    std::size_t n = 0;
    for (char ch : label) msg[n++] = static_cast<std::byte>(ch);
    for (auto b : of_dialer) msg[n++] = b;
    for (auto b : of_acceptor) msg[n++] = b;
    auth_wire::proof out{};
#if defined(GREENREDUCE_WITH_OPENSSL)
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
             reinterpret_cast<const unsigned char*>(msg.data()), n,
             reinterpret_cast<unsigned char*>(out.data()), &len) == nullptr ||
        len != out.size())
      throw config_error("auth: HMAC-SHA256 failed");
#endif
    return out;
  }

  /// Constant-time comparison of a received proof with the expected one.
  bool check(bool dialer, const auth_wire::challenge& of_dialer,
             const auth_wire::challenge& of_acceptor, const auth_wire::proof& got) const {
    const auto want = prove(dialer, of_dialer, of_acceptor);
#if defined(GREENREDUCE_WITH_OPENSSL)
    return CRYPTO_memcmp(want.data(), got.data(), want.size()) == 0;
#else
    (void)want;
    (void)got;
    return false;
#endif
  }

 private:
  std::vector<unsigned char> key_;
};

/// How an authentication ended: ok, refused by the peer's bytes (a wrong
/// proof or challenge: retrying will not help), or cut off (EOF, reset,
/// closed by a timer: perhaps transient).
struct auth_result {
  enum class kind { ok, refused, cut } how = kind::ok;
  std::string why;
  std::uint32_t peer_rank = auth_wire::no_rank;
  bool ok() const noexcept { return how == kind::ok; }
};

namespace detail {
struct auth_exchange {
  auth_wire::challenge mine{}, theirs{};
  auth_wire::proof out{}, in{};
};
}  // namespace detail

/// Runs the exchange of the header comment on a connected socket and calls
/// `done(auth_result)` once. The caller keeps `sock` alive (its handler
/// usually owns it) and bounds the time with a timer that closes the socket.
template <class Socket, class Done>
void async_authenticate(Socket& sock, std::shared_ptr<const peer_auth> a, bool dialer,
                        auth_wire::role r, std::uint32_t rank, Done done) {
  namespace net = boost::asio;
  using ec_t = boost::system::error_code;
  auto x = std::make_shared<detail::auth_exchange>();
  auto d = std::make_shared<Done>(std::move(done));
  auto cut = [d](const char* step, const ec_t& ec) {
    (*d)(auth_result{auth_result::kind::cut, detail::str("auth: ", step, ": ", ec.message()), {}});
  };
  auto refuse = [d](std::string why) {
    (*d)(auth_result{auth_result::kind::refused, std::move(why), {}});
  };
  x->mine = a->make_challenge(r, rank);
  net::async_write(
      sock, net::buffer(x->mine), [&sock, a, dialer, r, x, d, cut, refuse](ec_t ec, std::size_t) {
        if (ec) return cut("sending the challenge", ec);
        net::async_read(
            sock, net::buffer(x->theirs),
            [&sock, a, dialer, r, x, d, cut, refuse](ec_t ec2, std::size_t) {
              if (ec2) return cut("reading the challenge", ec2);
              auth_wire::challenge_fields peer;
              try {
                peer = auth_wire::parse_challenge(x->theirs, r);
              } catch (const decode_error& e) {
                return refuse(e.what());
              }
              const auto& cd = dialer ? x->mine : x->theirs;
              const auto& ca = dialer ? x->theirs : x->mine;
              if (dialer) {
                x->out = a->prove(true, cd, ca);
                net::async_write(
                    sock, net::buffer(x->out),
                    [&sock, a, x, d, cut, refuse, peer](ec_t ec3, std::size_t) {
                      if (ec3) return cut("sending the proof", ec3);
                      net::async_read(
                          sock, net::buffer(x->in),
                          [a, x, d, cut, refuse, peer](ec_t ec4, std::size_t) {
                            if (ec4)
                              return cut(
                                  "reading the peer's proof (was ours refused? is the secret the "
                                  "same?)",
                                  ec4);
                            if (!a->check(false, x->mine, x->theirs, x->in))
                              return refuse(
                                  "auth: the peer's proof is wrong (it has another secret)");
                            (*d)(auth_result{auth_result::kind::ok, {}, peer.rank});
                          });
                    });
                return;
              }
              net::async_read(
                  sock, net::buffer(x->in),
                  [&sock, a, x, d, cut, refuse, peer](ec_t ec3, std::size_t) {
                    if (ec3) return cut("reading the proof", ec3);
                    if (!a->check(true, x->theirs, x->mine, x->in))
                      return refuse("auth: wrong proof (the peer does not have the job's secret)");
                    x->out = a->prove(false, x->theirs, x->mine);
                    net::async_write(sock, net::buffer(x->out),
                                     [x, d, cut, peer](ec_t ec4, std::size_t) {
                                       if (ec4) return cut("sending our proof", ec4);
                                       (*d)(auth_result{auth_result::kind::ok, {}, peer.rank});
                                     });
                  });
            });
      });
}

}  // namespace greenreduce::transport
