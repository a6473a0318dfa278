// Routing decisions: smarthost routes with port defaults, address literals, MX, postmaster.
#include "delivery/routes.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

config::RouteHost Host(std::string_view text) { return config::RouteHost::Parse(text).value(); }

config::DomainConfig Domain(std::vector<std::string_view> routes, uint16_t port = 25) {
  config::DomainConfig domain;
  for (std::string_view r : routes) domain.routes.push_back(Host(r));
  domain.remote_smtp_port = port;
  return domain;
}

TEST(RoutesTest, SmarthostsKeepOrderAndFillPorts) {
  absl::StatusOr<Route> route =
      RouteForDomain(Domain({"relay1.example.net", "[192.0.2.7]:2526", "[::1]"}, 587),
                     "example.com");
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->kind, Route::Kind::kSmarthost);
  ASSERT_EQ(route->hops.size(), 3u);
  EXPECT_EQ(route->hops[0], (RouteHop{"relay1.example.net", false, 587}));
  EXPECT_EQ(route->hops[1], (RouteHop{"192.0.2.7", true, 2526}));
  EXPECT_EQ(route->hops[2], (RouteHop{"::1", true, 587}));
  EXPECT_TRUE(route->mx_domain.empty());
}

TEST(RoutesTest, NoRoutesMeansMx) {
  struct Row {
    std::string domain;
    std::string mx;
  };
  for (const Row& row : std::vector<Row>{{"example.com", "example.com"},
                                         {"Example.COM.", "example.com"},
                                         {"mail_x.example", "mail_x.example"}}) {
    absl::StatusOr<Route> route = RouteForDomain(Domain({}, 2525), row.domain);
    ASSERT_TRUE(route.ok()) << row.domain << ": " << route.status();
    EXPECT_EQ(route->kind, Route::Kind::kMx);
    EXPECT_EQ(route->mx_domain, row.mx);
    EXPECT_EQ(route->port, 2525);
    EXPECT_TRUE(route->hops.empty());
  }
}

TEST(RoutesTest, AddressLiterals) {
  struct Row {
    std::string domain;
    bool ok;
    std::string host;
  };
  const std::vector<Row> rows = {
      {"[192.0.2.1]", true, "192.0.2.1"},
      {"[IPv6:2001:db8::1]", true, "2001:db8::1"},
      {"[ipv6:::1]", true, "::1"},
      {"[2001:db8::1]", false, ""},  // IPv6 needs its tag (RFC 5321 §4.1.3)
      {"[IPv6:192.0.2.1]", false, ""},
      {"[300.0.0.1]", false, ""},
      {"[]", false, ""},
      {"[192.0.2.1", false, ""},
  };
  for (const Row& row : rows) {
    absl::StatusOr<Route> route = RouteForDomain(Domain({}, 26), row.domain);
    ASSERT_EQ(route.ok(), row.ok) << row.domain;
    if (!row.ok) {
      EXPECT_EQ(route.status().code(), absl::StatusCode::kInvalidArgument);
      continue;
    }
    EXPECT_EQ(route->kind, Route::Kind::kLiteral);
    ASSERT_EQ(route->hops.size(), 1u);
    EXPECT_EQ(route->hops[0], (RouteHop{row.host, true, 26}));
  }
  // Configured routes win over a literal, as a relayhost does.
  absl::StatusOr<Route> via = RouteForDomain(Domain({"relay.test"}), "[192.0.2.1]");
  ASSERT_TRUE(via.ok());
  EXPECT_EQ(via->kind, Route::Kind::kSmarthost);
}

TEST(RoutesTest, RecipientDomain) {
  struct Row {
    std::string address;
    std::string domain;  // "" = error
  };
  const std::vector<Row> rows = {
      {"User@Example.COM", "example.com"},
      {"user@example.com.", "example.com"},
      {"\"a@b\"@c.example", "c.example"},
      {"u@[192.0.2.1]", "[192.0.2.1]"},
      {"u@[ipv6:2001:DB8::1]", "[IPv6:2001:db8::1]"},
      {"nodomain", ""},
      {"u@", ""},
      {"u@bad!name", ""},
      {"u@b\xc3\xbc" "cher.example", ""},  // IDNs are not converted to A-labels
      {"u@" + std::string(300, 'a') + ".example", ""},
  };
  for (const Row& row : rows) {
    absl::StatusOr<std::string> domain = RecipientDomain(row.address);
    if (row.domain.empty()) {
      EXPECT_FALSE(domain.ok()) << row.address;
      EXPECT_EQ(domain.status().code(), absl::StatusCode::kInvalidArgument);
    } else {
      ASSERT_TRUE(domain.ok()) << row.address << ": " << domain.status();
      EXPECT_EQ(*domain, row.domain);
    }
  }
}

TEST(RoutesTest, Postmaster) {
  config::GlobalOptions global;
  global.postmaster = "admin@mail.test";
  EXPECT_EQ(RewritePostmaster("postmaster", global), "admin@mail.test");
  EXPECT_EQ(RewritePostmaster("PostMaster", global), "admin@mail.test");
  EXPECT_EQ(RewritePostmaster("postmaster@other.test", global), "postmaster@other.test");
  EXPECT_EQ(RewritePostmaster("postmasters", global), "postmasters");
}

TEST(RoutesTest, RouteForRecipientUsesTheDomainScope) {
  config::Config config;
  config.global.postmaster = "admin@corp.test";
  config::DomainConfig corp = Domain({"[127.0.0.1]:2526"}, 25);
  corp.name = "corp.test";
  config.domains.emplace("corp.test", corp);
  config.default_domain = Domain({}, 25);

  std::string routed;
  absl::StatusOr<Route> route = RouteForRecipient(config, "Postmaster", &routed);
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(routed, "admin@corp.test");
  EXPECT_EQ(route->kind, Route::Kind::kSmarthost);
  EXPECT_EQ(route->hops[0], (RouteHop{"127.0.0.1", true, 2526}));

  route = RouteForRecipient(config, "bob@CORP.test", &routed);
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->kind, Route::Kind::kSmarthost);
  EXPECT_EQ(routed, "bob@CORP.test");  // the local part keeps its case

  route = RouteForRecipient(config, "carol@elsewhere.test");
  ASSERT_TRUE(route.ok());
  EXPECT_EQ(route->kind, Route::Kind::kMx);
  EXPECT_EQ(route->mx_domain, "elsewhere.test");

  EXPECT_FALSE(RouteForRecipient(config, "nobody").ok());
}

// The share key: equal exactly when a session would be the same.
TEST(RoutesTest, SessionShareKeyDiffersByWhatMakesTheSessionDiffer) {
  int context_a = 0;
  int context_b = 0;
  auto key = [&](std::vector<std::string_view> routes, config::OutboundTls tls,
                 const void* context, std::string_view helo = "mx.test", uint16_t port = 25,
                 std::string_view domain = "a.example") {
    absl::StatusOr<Route> route = RouteForDomain(Domain(routes, port), domain);
    EXPECT_TRUE(route.ok()) << route.status();
    return SessionShareKey(*route, SessionKeyInputs{tls, context, helo});
  };
  using config::OutboundTls;
  const std::string base = key({"[127.0.0.1]:2526"}, OutboundTls::kRequired, &context_a);
  EXPECT_FALSE(base.empty());
  // Another domain, same hops and settings: the same key.
  EXPECT_EQ(key({"[127.0.0.1]:2526"}, OutboundTls::kRequired, &context_a, "mx.test", 25,
                "b.example"),
            base);
  EXPECT_NE(key({"[127.0.0.1]:2527"}, OutboundTls::kRequired, &context_a), base);
  EXPECT_NE(key({"[127.0.0.2]:2526"}, OutboundTls::kRequired, &context_a), base);
  EXPECT_NE(key({"[127.0.0.1]:2526", "[127.0.0.2]:2526"}, OutboundTls::kRequired, &context_a),
            base);
  EXPECT_NE(key({"[127.0.0.1]:2526"}, OutboundTls::kVerify, &context_a), base);
  EXPECT_NE(key({"[127.0.0.1]:2526"}, OutboundTls::kOpportunistic, &context_a), base);
  EXPECT_NE(key({"[127.0.0.1]:2526"}, OutboundTls::kRequired, &context_b), base);
  EXPECT_NE(key({"[127.0.0.1]:2526"}, OutboundTls::kRequired, &context_a, "other.test"), base);
  // A name hop and a literal with the same text are different hops; so are two names
  // whose verify check would name different hosts.
  EXPECT_NE(key({"relay.example.net:25"}, OutboundTls::kVerify, &context_a),
            key({"relay2.example.net:25"}, OutboundTls::kVerify, &context_a));
  // The port a hop inherits from remote_smtp_port counts.
  EXPECT_NE(key({"relay.example.net"}, OutboundTls::kOff, nullptr, "mx.test", 25),
            key({"relay.example.net"}, OutboundTls::kOff, nullptr, "mx.test", 587));
  // Opportunistic without a client context is plaintext, the same as off; with TLS off
  // the context does not matter.
  EXPECT_EQ(key({"[127.0.0.1]"}, OutboundTls::kOpportunistic, nullptr),
            key({"[127.0.0.1]"}, OutboundTls::kOff, nullptr));
  EXPECT_EQ(key({"[127.0.0.1]"}, OutboundTls::kOff, &context_a),
            key({"[127.0.0.1]"}, OutboundTls::kOff, &context_b));
  // Length-prefixed fields: names cannot run into each other.
  EXPECT_NE(key({"[127.0.0.1]"}, OutboundTls::kOff, nullptr, "a;hop=ip:25:9:127.0.0.1"),
            key({"[127.0.0.1]", "[127.0.0.1]"}, OutboundTls::kOff, nullptr, "a"));
}

TEST(RoutesTest, MxAndLiteralDomainsAsKeys) {
  SessionKeyInputs inputs{config::OutboundTls::kOff, nullptr, "mx.test"};
  absl::StatusOr<Route> mx = RouteForDomain(Domain({}), "example.com");
  ASSERT_TRUE(mx.ok());
  EXPECT_EQ(SessionShareKey(*mx, inputs), "");  // never shared: its own MX answer
  // An address-literal domain and a smarthost route to that address are the same session.
  absl::StatusOr<Route> literal = RouteForDomain(Domain({}, 2526), "[192.0.2.7]");
  absl::StatusOr<Route> smart = RouteForDomain(Domain({"[192.0.2.7]:2526"}), "x.example");
  ASSERT_TRUE(literal.ok() && smart.ok());
  EXPECT_EQ(SessionShareKey(*literal, inputs), SessionShareKey(*smart, inputs));
  EXPECT_FALSE(SessionShareKey(*literal, inputs).empty());
}

}  // namespace
}  // namespace ringmail::delivery
