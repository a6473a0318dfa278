#include "tools/ringload/options.h"
#include "tools/ringload/tls_stream.h"

#include <arpa/inet.h>

#include <cmath>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ringmail::ringload {
namespace {

absl::Status FlagError(absl::string_view flag, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", why));
}

template <typename T>
absl::StatusOr<T> ParseUint(absl::string_view flag, absl::string_view text, T lo, T hi) {
  uint64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v < lo || v > hi) {
    return FlagError(flag, absl::StrCat("expected an integer in [", lo, ", ", hi, "], got '",
                                        text, "'"));
  }
  return static_cast<T>(v);
}

absl::StatusOr<double> ParseDouble(absl::string_view flag, absl::string_view text, double lo,
                                   double hi) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !std::isfinite(v) || v < lo || v > hi) {
    return FlagError(flag, absl::StrCat("expected a number in [", lo, ", ", hi, "], got '",
                                        text, "'"));
  }
  return v;
}

// "1024", "10k", "2M" (binary multiples).
bool ParseByteCount(absl::string_view text, uint64_t* out) {
  uint64_t mult = 1;
  if (!text.empty()) {
    char last = absl::ascii_tolower(text.back());
    if (last == 'k' || last == 'm') {
      mult = last == 'k' ? 1024 : 1024 * 1024;
      text.remove_suffix(1);
    }
  }
  uint64_t v = 0;
  if (!absl::SimpleAtoi(text, &v) || v > kMessageBytesMax) return false;
  *out = v * mult;
  return *out <= kMessageBytesMax;
}

absl::Status CheckAddress(absl::string_view flag, absl::string_view text) {
  if (text.size() > kAddressBytesMax) return FlagError(flag, "address longer than 256 bytes");
  for (char c : text) {
    if (c <= ' ' || c == '<' || c == '>' || c == 0x7f) {
      return FlagError(flag, absl::StrCat("address '", text, "' has a space, control "
                                          "character or angle bracket"));
    }
  }
  return absl::OkStatus();
}

struct Flag {
  absl::string_view name;
  bool takes_value;
  std::function<absl::Status(absl::string_view)> set;
};

absl::Status ParseFlags(const std::vector<absl::string_view>& args, const std::vector<Flag>& flags,
                        std::vector<absl::string_view>* seen) {
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view arg = args[i];
    if (!absl::ConsumePrefix(&arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'"));
    }
    absl::string_view value;
    bool has_inline = false;
    if (size_t eq = arg.find('='); eq != absl::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    const Flag* flag = nullptr;
    for (const Flag& f : flags) {
      if (f.name == arg) flag = &f;
    }
    if (flag == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown flag --", arg));
    if (flag->takes_value && !has_inline) {
      if (i + 1 >= args.size()) return FlagError(arg, "needs a value");
      value = args[++i];
    } else if (!flag->takes_value && has_inline) {
      return FlagError(arg, "takes no value");
    }
    seen->push_back(flag->name);
    if (absl::Status s = flag->set(value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

bool Seen(const std::vector<absl::string_view>& seen, absl::string_view name) {
  for (absl::string_view s : seen) {
    if (s == name) return true;
  }
  return false;
}

void AddCommonFlags(CommonOptions* o, std::vector<Flag>* flags) {
  flags->push_back({"threads", true, [o](absl::string_view v) -> absl::Status {
    auto n = ParseUint<uint32_t>("threads", v, 1, kThreadsMax);
    if (!n.ok()) return n.status();
    o->threads = *n;
    return absl::OkStatus();
  }});
  flags->push_back({"pin", false, [o](absl::string_view) {
    o->pin = true;
    return absl::OkStatus();
  }});
  flags->push_back({"json", false, [o](absl::string_view) {
    o->json = true;
    return absl::OkStatus();
  }});
  flags->push_back({"quiet", false, [o](absl::string_view) {
    o->quiet = true;
    return absl::OkStatus();
  }});
  flags->push_back({"seed", true, [o](absl::string_view v) -> absl::Status {
    auto n = ParseUint<uint64_t>("seed", v, 0, UINT64_MAX);
    if (!n.ok()) return n.status();
    o->seed = *n;
    return absl::OkStatus();
  }});
  flags->push_back({"dump", true, [o](absl::string_view v) -> absl::Status {
    if (v.empty()) return FlagError("dump", "needs a directory");
    o->dump_dir = std::string(v);
    return absl::OkStatus();
  }});
}

// Binds a flag that parses into *field through `parse`.
template <typename T, typename Parse>
Flag Bound(absl::string_view name, T* field, Parse parse) {
  return {name, true, [field, parse](absl::string_view v) -> absl::Status {
            auto r = parse(v);
            if (!r.ok()) return r.status();
            *field = *r;
            return absl::OkStatus();
          }};
}

absl::Status CheckTemplate(absl::string_view text) {
  if (text.empty() || text.size() > kAddressBytesMax / 2) {
    return FlagError("rcpt-template", "must be 1..128 bytes");
  }
  size_t at = text.find('@');
  if (at == absl::string_view::npos) return FlagError("rcpt-template", "needs an '@'");
  std::string probe = absl::StrReplaceAll(text, {{"{n}", "1"}, {"{d}", "1"}});
  if (probe.find_first_of("{}") != std::string::npos) {
    return FlagError("rcpt-template", "only {n} and {d} may appear in braces");
  }
  return CheckAddress("rcpt-template", probe);
}

}  // namespace

absl::StatusOr<Endpoint> ParseEndpoint(absl::string_view flag, absl::string_view text) {
  Endpoint ep;
  absl::string_view host;
  absl::string_view port_text;
  if (absl::StartsWith(text, "[")) {
    size_t close = text.find("]:");
    if (close == absl::string_view::npos) return FlagError(flag, "expected [IPV6]:PORT");
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return FlagError(flag, "expected HOST:PORT");
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  auto port = ParseUint<uint16_t>(flag, port_text, 0, 65535);
  if (!port.ok()) return FlagError(flag, absl::StrCat("bad port '", port_text, "'"));
  if (host == "localhost") host = "127.0.0.1";
  std::string host_z(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ep.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
  if (inet_pton(AF_INET, host_z.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(*port);
    ep.len = sizeof(sockaddr_in);
    ep.text = absl::StrCat(host_z, ":", *port);
  } else if (inet_pton(AF_INET6, host_z.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(*port);
    ep.len = sizeof(sockaddr_in6);
    ep.text = absl::StrCat("[", host_z, "]:", *port);
  } else {
    return FlagError(flag, absl::StrCat("'", host, "' is not a numeric IP address"));
  }
  return ep;
}

absl::StatusOr<std::vector<SizeClass>> ParseSizes(absl::string_view text) {
  std::vector<SizeClass> out;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    if (out.size() == kSizeClassesMax) return FlagError("size", "at most 16 sizes");
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(item, ':');
    SizeClass sc;
    if (!ParseByteCount(parts.first, &sc.bytes)) {
      return FlagError("size", absl::StrCat("bad size '", parts.first, "' (bytes, or with k/M; "
                                            "at most 64M)"));
    }
    if (!parts.second.empty() || absl::StrContains(item, ':')) {
      if (!absl::SimpleAtod(parts.second, &sc.weight) || !(sc.weight > 0) ||
          !std::isfinite(sc.weight)) {
        return FlagError("size", absl::StrCat("bad weight '", parts.second, "'"));
      }
    }
    out.push_back(sc);
  }
  if (out.empty()) return FlagError("size", "empty");
  return out;
}

absl::StatusOr<std::vector<ReplyRule>> ParseReplyRules(absl::string_view text) {
  std::vector<ReplyRule> out;
  double total = 0;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    if (out.size() == kReplyRulesMax) return FlagError("reply", "at most 16 rules");
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(item, ':');
    ReplyRule r;
    if (!absl::SimpleAtoi(parts.first, &r.code) || r.code < 400 || r.code > 599) {
      return FlagError("reply", absl::StrCat("bad code '", parts.first, "' (400..599)"));
    }
    if (!absl::SimpleAtod(parts.second, &r.fraction) || !(r.fraction >= 0) || r.fraction > 1) {
      return FlagError("reply", absl::StrCat("bad fraction '", parts.second, "' (0..1)"));
    }
    total += r.fraction;
    out.push_back(r);
  }
  if (total > 1.0 + 1e-9) return FlagError("reply", "fractions add up to more than 1");
  return out;
}

namespace {

// The --http flags of `ringload send`.
void AddHttpFlags(SendOptions* o, std::vector<Flag>* flags) {
  flags->push_back({"http", false, [o](absl::string_view) {
                      o->http = true;
                      return absl::OkStatus();
                    }});
  flags->push_back({"token", true, [o](absl::string_view v) -> absl::Status {
                      if (v.empty() || v.size() > kTokenBytesMax) {
                        return FlagError("token", "expected 1 to 4096 bytes");
                      }
                      for (char c : v) {
                        if (c <= ' ' || c == 0x7f) return FlagError("token", "has a blank or "
                                                                    "control character");
                      }
                      o->http_token = std::string(v);
                      return absl::OkStatus();
                    }});
  flags->push_back({"path", true, [o](absl::string_view v) -> absl::Status {
                      if (v.empty() || v[0] != '/' || v.size() > kHttpPathBytesMax ||
                          v.find_first_of(" \t\r\n") != v.npos) {
                        return FlagError("path", "expected an absolute path without blanks");
                      }
                      o->http_path = std::string(v);
                      return absl::OkStatus();
                    }});
  flags->push_back({"kind", true, [o](absl::string_view v) -> absl::Status {
                      if (v == "raw") {
                        o->http_kind = SendOptions::HttpKind::kRaw;
                      } else if (v == "structured") {
                        o->http_kind = SendOptions::HttpKind::kStructured;
                      } else {
                        return FlagError("kind", absl::StrCat("expected raw or structured, "
                                                              "got '", v, "'"));
                      }
                      return absl::OkStatus();
                    }});
  flags->push_back({"template", false, [o](absl::string_view) {
                      o->http_template = true;
                      return absl::OkStatus();
                    }});
}

// The flags of `ringload send`, bound to the fields of *o.
void AddSendFlags(SendOptions* o, std::vector<Flag>* flags_out) {
  std::vector<Flag>& flags = *flags_out;
  auto u32 = [](absl::string_view name, uint32_t lo, uint32_t hi) {
    return [=](absl::string_view v) { return ParseUint<uint32_t>(name, v, lo, hi); };
  };
  auto u64 = [](absl::string_view name, uint64_t lo, uint64_t hi) {
    return [=](absl::string_view v) { return ParseUint<uint64_t>(name, v, lo, hi); };
  };
  auto dbl = [](absl::string_view name, double lo, double hi) {
    return [=](absl::string_view v) { return ParseDouble(name, v, lo, hi); };
  };
  flags.push_back(Bound("target", &o->target, [](absl::string_view v) {
    return ParseEndpoint("target", v);
  }));
  flags.push_back(Bound("connections", &o->connections, u32("connections", 1, kConnectionsMax)));
  flags.push_back(Bound("messages", &o->messages, u64("messages", 1, uint64_t{1} << 40)));
  flags.push_back(Bound("duration", &o->duration_s, dbl("duration", 0.001, kDurationMax)));
  flags.push_back(Bound("size", &o->sizes, ParseSizes));
  flags.push_back(Bound("rcpts", &o->rcpts, u32("rcpts", 1, kRcptsMax)));
  flags.push_back(Bound("domains", &o->domains, u32("domains", 1, kDomainsMax)));
  flags.push_back({"tls-resume", false, [o](absl::string_view) {
                     o->tls_resume = true;
                     return absl::OkStatus();
                   }});
  flags.push_back({"no-tls-offload", false, [o](absl::string_view) {
                     o->tls_offload = false;
                     return absl::OkStatus();
                   }});
  flags.push_back({"pipelining", false, [o](absl::string_view) {
                     o->pipelining = true;
                     return absl::OkStatus();
                   }});
  flags.push_back({"chunking", false, [o](absl::string_view) {
                     o->chunking = true;
                     return absl::OkStatus();
                   }});
  flags.push_back(Bound("messages-per-connection", &o->messages_per_connection,
                        u64("messages-per-connection", 0, uint64_t{1} << 40)));
  flags.push_back(Bound("rate", &o->rate, dbl("rate", 0.001, 1e7)));
  flags.push_back({"from", true, [o](absl::string_view v) -> absl::Status {
                     if (absl::Status s = CheckAddress("from", v); !s.ok()) return s;
                     o->from = std::string(v);
                     return absl::OkStatus();
                   }});
  flags.push_back({"rcpt-template", true, [o](absl::string_view v) -> absl::Status {
                     if (absl::Status s = CheckTemplate(v); !s.ok()) return s;
                     o->rcpt_template = std::string(v);
                     return absl::OkStatus();
                   }});
  flags.push_back({"ehlo", true, [o](absl::string_view v) -> absl::Status {
                     if (v.empty() || v.size() > 255 || v.find_first_of(" \r\n") != v.npos) {
                       return FlagError("ehlo", "expected a host name");
                     }
                     o->ehlo = std::string(v);
                     return absl::OkStatus();
                   }});
  flags.push_back({"record", true, [o](absl::string_view v) -> absl::Status {
                     if (v.empty()) return FlagError("record", "needs a file name");
                     o->record_path = std::string(v);
                     return absl::OkStatus();
                   }});
  AddHttpFlags(o, flags_out);
  flags.push_back({"tls", true, [o](absl::string_view v) -> absl::Status {
                     if (v == "starttls") {
                       o->tls = SendOptions::Tls::kStartTls;
                     } else if (v == "implicit") {
                       o->tls = SendOptions::Tls::kImplicit;
                     } else {
                       return FlagError("tls", "expected starttls or implicit");
                     }
                     return absl::OkStatus();
                   }});
  flags.push_back(Bound("timeout", &o->timeout_s, dbl("timeout", 0.001, kDurationMax)));
  flags.push_back(Bound("io-timeout", &o->io_timeout_s, dbl("io-timeout", 0.001, 3600)));
  flags.push_back({"max-errors", true, [o](absl::string_view v) -> absl::Status {
                     if (!absl::SimpleAtoi(v, &o->max_errors) || o->max_errors < 0) {
                       return FlagError("max-errors", absl::StrCat("expected a count ≥ 0, got '",
                                                                   v, "'"));
                     }
                     return absl::OkStatus();
                   }});
}

}  // namespace

absl::StatusOr<SendOptions> ParseSendOptions(const std::vector<absl::string_view>& args) {
  SendOptions o;
  std::vector<Flag> flags;
  AddCommonFlags(&o.common, &flags);
  AddSendFlags(&o, &flags);
  std::vector<absl::string_view> seen;
  if (absl::Status s = ParseFlags(args, flags, &seen); !s.ok()) return s;
  if (!Seen(seen, "target")) return FlagError("target", "is required (HOST:PORT)");
  if (o.target.text.ends_with(":0")) return FlagError("target", "port 0 is not a target");
  if (o.messages == 0 && o.duration_s == 0) {
    return absl::InvalidArgumentError("one of --messages N or --duration S is required: a run "
                                      "is always bounded");
  }
  for (const SizeClass& sc : o.sizes) {
    if (o.chunking && sc.bytes == 0) return FlagError("size", "0 bytes");
  }
  const bool http_only = Seen(seen, "token") || Seen(seen, "path") || Seen(seen, "kind") ||
                         Seen(seen, "template");
  if (http_only && !o.http) {
    return absl::InvalidArgumentError("--token, --path, --kind and --template need --http");
  }
  if (o.http && o.chunking) return FlagError("chunking", "is SMTP only (not with --http)");
  if (o.http && o.tls != SendOptions::Tls::kOff) {
    return FlagError("tls", "is SMTP only (not with --http)");
  }
  if (o.tls_resume && o.tls == SendOptions::Tls::kOff) {
    return FlagError("tls-resume", "needs --tls starttls|implicit");
  }
  if (o.tls != SendOptions::Tls::kOff) {
    auto ctx = MakeLoadClientContext(o.tls_offload);
    if (!ctx.ok()) return FlagError("tls", std::string(ctx.status().message()));
    o.tls_client = *std::move(ctx);
  }
  if (o.http_template && o.http_kind != SendOptions::HttpKind::kStructured) {
    return FlagError("template", "needs --kind structured (the API expands templates only "
                                 "in structured content)");
  }
  if (o.timeout_s == 0) {
    // Long enough for the workload at a slow pace; short enough that a wedged run ends.
    o.timeout_s = o.duration_s > 0 ? o.duration_s + 30 : 600;
    if (o.rate > 0 && o.messages > 0) o.timeout_s = o.messages / o.rate + 60;
  }
  return o;
}

absl::StatusOr<SinkOptions> ParseSinkOptions(const std::vector<absl::string_view>& args) {
  SinkOptions o;
  auto def = ParseEndpoint("listen", "127.0.0.1:0");
  o.listen = *def;
  std::vector<Flag> flags;
  AddCommonFlags(&o.common, &flags);
  flags.push_back(Bound("listen", &o.listen, [](absl::string_view v) {
    return ParseEndpoint("listen", v);
  }));
  flags.push_back(Bound("reply", &o.replies, ParseReplyRules));
  flags.push_back(Bound("delay", &o.delay_ms, [](absl::string_view v) {
    return ParseUint<uint32_t>("delay", v, 0, 600'000);
  }));
  flags.push_back(Bound("expect", &o.expect, [](absl::string_view v) {
    return ParseUint<uint64_t>("expect", v, 1, uint64_t{1} << 40);
  }));
  flags.push_back(Bound("duration", &o.duration_s, [](absl::string_view v) {
    return ParseDouble("duration", v, 0.001, kDurationMax);
  }));
  flags.push_back(Bound("max-line-length", &o.max_line_bytes, [](absl::string_view v) {
    return ParseUint<uint32_t>("max-line-length", v, 512, 1 << 20);
  }));
  flags.push_back(Bound("max-message-size", &o.max_message_bytes, [](absl::string_view v) {
    return ParseUint<uint64_t>("max-message-size", v, 1024, uint64_t{1} << 32);
  }));
  flags.push_back(Bound("max-rcpts", &o.max_rcpts, [](absl::string_view v) {
    return ParseUint<uint32_t>("max-rcpts", v, 1, 100'000);
  }));
  flags.push_back(Bound("max-connections", &o.max_connections, [](absl::string_view v) {
    return ParseUint<uint32_t>("max-connections", v, 1, 1'000'000);
  }));
  flags.push_back(Bound("idle-timeout", &o.idle_timeout_s, [](absl::string_view v) {
    return ParseDouble("idle-timeout", v, 0.001, 86400);
  }));
  flags.push_back(Bound("tls-cert", &o.tls_certificate, [](absl::string_view v) {
    return absl::StatusOr<std::string>(std::string(v));
  }));
  flags.push_back(Bound("tls-key", &o.tls_key, [](absl::string_view v) {
    return absl::StatusOr<std::string>(std::string(v));
  }));
  // "--tls CERT KEY" (two values) is spelled "--tls-cert CERT --tls-key KEY" for ParseFlags.
  std::vector<absl::string_view> rewritten;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] != "--tls") {
      rewritten.push_back(args[i]);
      continue;
    }
    if (i + 2 >= args.size()) return FlagError("tls", "needs CERT and KEY");
    rewritten.insert(rewritten.end(), {"--tls-cert", args[i + 1], "--tls-key", args[i + 2]});
    i += 2;
  }
  std::vector<absl::string_view> seen;
  if (absl::Status s = ParseFlags(rewritten, flags, &seen); !s.ok()) return s;
  if (o.tls_certificate.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls needs both a certificate and a key");
  }
  if (!o.tls_certificate.empty()) {
    tls::TlsContextOptions to;
    to.role = tls::TlsRole::kServer;
    to.certificate_chain_file = o.tls_certificate;
    to.private_key_file = o.tls_key;
    absl::StatusOr<std::shared_ptr<const tls::TlsContext>> ctx = tls::TlsContext::Create(to);
    if (!ctx.ok()) return ctx.status();
    o.tls_context = *std::move(ctx);
  }
  return o;
}

std::string SendUsage() {
  return R"(usage: ringload send --target HOST:PORT (--messages N | --duration S) [flags]
  --connections N            parallel SMTP sessions (default 1)
  --size SPEC                message size: BYTES, 10k, or 1k:70,10k:25,100k:5 (default 1024)
  --rcpts N                  recipients per message (default 1)
  --domains N                spread recipients over N domains (default 1)
  --rcpt-template T          recipient, {n} = recipient number, {d} = domain number
                             (default user{n}@domain{d}.test)
  --from ADDR                envelope sender (default ringload@ringload.test)
  --ehlo NAME                EHLO name (default ringload.test)
  --pipelining               pipeline commands when the server offers PIPELINING
  --chunking                 send BDAT instead of DATA when the server offers CHUNKING
  --tls starttls|implicit    TLS: STARTTLS after EHLO (then EHLO again), or from the first
                             byte (SMTPS); certificates are not verified
  --tls-resume               each new connection resumes the TLS session (1.3 ticket) its
                             slot's previous connection got, if the server issued one
  --no-tls-offload           TLS crypto in wolfSSL's own code only (default: AES-GCM and
                             the EC primitives on OpenSSL's libcrypto, AES-GCM preferred)
  --messages-per-connection N  reconnect after N messages (0 = reuse forever)
  --rate R                   open loop: R messages/s, latency measured from schedule
  --record FILE              one line per message answered 2xx at its end of data:
                             "SEQ <MESSAGE-ID> QUEUE-ID", QUEUE-ID being the token after
                             "queued as" in the reply, else the reply text with blanks as
                             '_'; Message-IDs are unique per run (random run id); lines are
                             flushed on exit, SIGINT and SIGTERM
  --dump DIR                 write each message sent (envelope + content) to DIR/<seq>.eml
  --max-errors N             errors allowed before stopping early and exiting 1 (default 0)
  --timeout S                hard bound on the whole run (default from the workload)
  --io-timeout S             longest wait for one reply (default 30)
  --threads N --pin --seed N --json --quiet
 HTTP injection (ringmaild's POST /api/inject/v1) instead of SMTP:
  --http                     one keep-alive HTTP/1.1 connection per --connections; each
                             message is one request, answered after it is durable; the
                             summary counts requests (codes are HTTP statuses); --record
                             writes the "id" (or "ids", comma-separated) of the answer
  --token TOKEN              Authorization: Bearer TOKEN
  --path PATH                request path (default /api/inject/v1)
  --kind raw|structured      raw: "content" is the whole RFC 5322 message (default);
                             structured: from/subject/headers/text_body, MIME built by
                             the server
  --template                 structured only: each recipient gets substitution_data
                             {"name": ...} and the subject and body use {{name}}, so the
                             server makes one message per recipient
  --pipelining               with --http: up to 4 requests in flight per connection
)";
}

std::string SinkUsage() {
  return R"(usage: ringload sink [--listen ADDR:PORT] [flags]
  --listen ADDR:PORT         default 127.0.0.1:0; prints "listening ADDR:PORT" on stdout
  --reply SPEC               answer a fraction with 4xx/5xx, e.g. 451:0.1,550:0.05
  --seed N                   seed for --reply (per loop, in order of arrival)
  --delay MS                 wait before each final reply
  --expect N                 exit once N messages have been answered
  --duration S               exit after S seconds
  --dump DIR                 write each message (envelope + unstuffed content) into DIR
  --max-line-length N        default 1000 bytes including CRLF
  --max-message-size N       default 52428800
  --max-rcpts N              default 1000
  --max-connections N        default 20000 (over all threads)
  --idle-timeout S           close sessions idle this long (default 300)
  --tls CERT KEY             offer STARTTLS with this PEM certificate chain and key
  --threads N --pin --json --quiet
)";
}

}  // namespace ringmail::ringload
