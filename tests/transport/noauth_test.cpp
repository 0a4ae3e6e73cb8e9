// A build without OpenSSL (compiled here with GREENREDUCE_WITH_OPENSSL
// undefined): everything works without a secret, and asking for one is a
// config_error that names the missing support instead of running unauthenticated.
#include <catch2/catch.hpp>

#include "greenreduce/transport/tcp.hpp"
#include "support/matchers.hpp"

namespace gr = greenreduce;
namespace grt = greenreduce::transport;
using greenreduce::test::what_has;

static_assert(!grt::auth_supported, "this test must be built without GREENREDUCE_WITH_OPENSSL");

TEST_CASE("auth without OpenSSL: a secret is refused, no secret works", "[transport][auth]") {
  CHECK_THROWS_MATCHES(grt::peer_auth("s3cret"), gr::config_error,
                       what_has("no OpenSSL support", "libssl-dev"));
  grt::tcp_options o;
  o.rank = 0;
  o.size = 2;
  o.master_addr = "127.0.0.1";
  o.master_port = 1;
  o.secret = "s3cret";
  CHECK_THROWS_MATCHES(grt::tcp(o), gr::config_error, what_has("GREENREDUCE_SECRET"));
  CHECK_THROWS_MATCHES(grt::store_client("127.0.0.1", 1, std::chrono::milliseconds(10),
                                         std::chrono::milliseconds(10), "s3cret"),
                       gr::config_error, what_has("no OpenSSL support"));
  grt::tcp_options alone;  // a world of one never touches the network
  grt::tcp t(alone);
  CHECK(t.size() == 1);
}
