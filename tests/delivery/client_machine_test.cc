// Table-driven dialogues against the pure outbound ESMTP client machine: server replies in,
// command bytes and actions out. The runner plays the I/O layer the way the header comment
// of client_machine.h describes, and renders every action as a short string:
//   ready | body:dot | body:raw | starttls | close | done(IDX:OUTCOME:CODE:STATUS,...)
// where OUTCOME is D (delivered), T (temporary) or P (permanent) and CODE is '-' for a
// recipient decided locally.
#include "delivery/client_machine.h"

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace ringmail::delivery {
namespace {

constexpr char kGreeting[] = "220 mx.test ESMTP\r\n";
constexpr char kEhloPipelining[] =
    "250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n";
constexpr char kEhloLockstep[] = "250-mx.test hello\r\n250-SIZE 10000\r\n250 8BITMIME\r\n";
constexpr char kEhloTls[] = "250-mx.test hello\r\n250-STARTTLS\r\n250 PIPELINING\r\n";
constexpr char kEhlo[] = "EHLO client.test\r\n";
constexpr char kMail[] = "MAIL FROM:<a@src.test> SIZE=100\r\n";
constexpr char kRcptX[] = "RCPT TO:<x@dst.test>\r\n";
constexpr char kRcptY[] = "RCPT TO:<y@dst.test>\r\n";
constexpr char kRcptZ[] = "RCPT TO:<z@dst.test>\r\n";

Transaction Tx(std::vector<std::string> recipients, BodyType body = BodyType::k7Bit,
               uint64_t size = 100) {
  Transaction tx;
  tx.sender = "a@src.test";
  for (size_t i = 0; i < recipients.size(); ++i) {
    tx.recipients.push_back({static_cast<uint32_t>(10 + i), recipients[i]});
  }
  tx.body_bytes = size;
  tx.body = body;
  return tx;
}
Transaction TxX() { return Tx({"x@dst.test"}); }
Transaction TxXYZ() { return Tx({"x@dst.test", "y@dst.test", "z@dst.test"}); }

struct Step {
  enum class Kind {
    kServer, kBegin, kQuit, kBodySent, kBodyFailed, kTimeout, kLost, kTlsOk, kTlsFail
  };
  Kind kind;
  std::string server;  // kServer
  std::optional<Transaction> tx;  // kBegin
  std::string client;   // expected command bytes after the step
  std::string actions;  // expected actions after the step
};

Step S(std::string server, std::string client = "", std::string actions = "") {
  return Step{Step::Kind::kServer, std::move(server), std::nullopt, std::move(client),
              std::move(actions)};
}
Step B(Transaction tx, std::string client, std::string actions = "") {
  return Step{Step::Kind::kBegin, "", std::move(tx), std::move(client), std::move(actions)};
}
Step Do(Step::Kind kind, std::string client = "", std::string actions = "") {
  return Step{kind, "", std::nullopt, std::move(client), std::move(actions)};
}
constexpr Step::Kind kQuit = Step::Kind::kQuit;
constexpr Step::Kind kBodySent = Step::Kind::kBodySent;
constexpr Step::Kind kBodyFailed = Step::Kind::kBodyFailed;
constexpr Step::Kind kTimeout = Step::Kind::kTimeout;
constexpr Step::Kind kLost = Step::Kind::kLost;
constexpr Step::Kind kTlsOk = Step::Kind::kTlsOk;
constexpr Step::Kind kTlsFail = Step::Kind::kTlsFail;

struct Case {
  std::string name;
  std::vector<Step> steps;
  std::string failure = "none";
  ClientState final_state = ClientState::kClosed;
  ClientOptions options = DefaultOptions();

  static ClientOptions DefaultOptions() {
    ClientOptions options;
    options.helo_name = "client.test";
    return options;
  }
};

std::string Render(const ClientAction& action) {
  switch (action.kind) {
    case ClientAction::Kind::kReady: return "ready";
    case ClientAction::Kind::kSendBody:
      return action.encoding == BodyEncoding::kRaw ? "body:raw" : "body:dot";
    case ClientAction::Kind::kStartTls: return "starttls";
    case ClientAction::Kind::kClose: return "close";
    case ClientAction::Kind::kTransactionDone: break;
  }
  std::vector<std::string> parts;
  for (const RecipientResult& r : action.result.recipients) {
    const char* outcome = r.outcome == RecipientOutcome::kDelivered   ? "D"
                          : r.outcome == RecipientOutcome::kTemporary ? "T"
                                                                      : "P";
    std::string code = r.code == 0 ? "-" : absl::StrCat(r.code);
    parts.push_back(absl::StrCat(r.index, ":", outcome, ":", code, ":", r.status.ToString()));
    EXPECT_EQ(r.remote, r.code != 0);
    EXPECT_FALSE(r.diagnostic.empty());
    EXPECT_EQ(r.diagnostic.find_first_of("\r\n"), std::string::npos);
  }
  return absl::StrCat("done(", absl::StrJoin(parts, ","), ")");
}

std::string TakeActions(ClientMachine& machine) {
  std::vector<std::string> out;
  while (std::optional<ClientAction> action = machine.TakeAction()) {
    out.push_back(Render(*action));
  }
  return absl::StrJoin(out, " ");
}

// Feeds a server step as pieces cut at `cuts` (sorted offsets), or whole when empty.
void FeedServer(ClientMachine& machine, const std::string& bytes, const std::vector<size_t>& cuts) {
  size_t start = 0;
  for (size_t cut : cuts) {
    if (cut <= start || cut >= bytes.size()) continue;
    machine.Feed(std::string_view(bytes).substr(start, cut - start));
    start = cut;
  }
  machine.Feed(std::string_view(bytes).substr(start));
}

void Apply(ClientMachine& machine, Step& step, const std::vector<size_t>& cuts) {
  switch (step.kind) {
    case Step::Kind::kServer: FeedServer(machine, step.server, cuts); break;
    case Step::Kind::kBegin: machine.Begin(*step.tx); break;
    case Step::Kind::kQuit: machine.Quit(); break;
    case Step::Kind::kBodySent: machine.BodySent(); break;
    case Step::Kind::kBodyFailed: machine.BodyFailed(); break;
    case Step::Kind::kTimeout: machine.Timeout(); break;
    case Step::Kind::kLost: machine.ConnectionLost(); break;
    case Step::Kind::kTlsOk: machine.TlsEstablished(); break;
    case Step::Kind::kTlsFail: machine.TlsFailed(); break;
  }
}

// Runs a dialogue; `cut_for(i, size)` gives the split points of server step i.
template <typename CutFn>
void RunDialogue(const Case& c, CutFn cut_for, const std::string& variant) {
  ClientMachine machine(c.options);
  machine.Start();
  EXPECT_EQ(machine.TakeOutput(), "");
  EXPECT_EQ(TakeActions(machine), "");
  std::vector<Step> steps = c.steps;
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE(absl::StrCat(c.name, variant, " step ", i, " server '", steps[i].server, "'"));
    std::vector<size_t> cuts =
        steps[i].kind == Step::Kind::kServer ? cut_for(i, steps[i].server.size())
                                             : std::vector<size_t>{};
    Apply(machine, steps[i], cuts);
    EXPECT_EQ(machine.TakeOutput(), steps[i].client);
    EXPECT_EQ(TakeActions(machine), steps[i].actions);
  }
  EXPECT_STREQ(ClientFailureKindName(machine.failure().kind), c.failure.c_str()) << c.name;
  EXPECT_STREQ(ClientStateName(machine.state()), ClientStateName(c.final_state)) << c.name;
}

ClientOptions WithTls(config::OutboundTls tls) {
  ClientOptions options = Case::DefaultOptions();
  options.tls = tls;
  return options;
}
ClientOptions WithChunking() {
  ClientOptions options = Case::DefaultOptions();
  options.prefer_chunking = true;
  return options;
}
ClientOptions SendEightBitAnyway() {
  ClientOptions options = Case::DefaultOptions();
  options.eight_bit = EightBitPolicy::kSendAnyway;
  return options;
}

const std::string kMailRcptXYZData =
    absl::StrCat(kMail, kRcptX, kRcptY, kRcptZ, "DATA\r\n");

std::vector<Case> Dialogues() {
  return {
      {"plain_lockstep",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 2.1.0 Ok\r\n", kRcptX), S("250 2.1.5 Ok\r\n", "DATA\r\n"),
        S("354 End data with <CR><LF>.<CR><LF>\r\n", "", "body:dot"), Do(kBodySent),
        S("250 2.0.0 Ok: queued as 1\r\n", "", "done(10:D:250:2.0.0) ready"),
        Do(kQuit, "QUIT\r\n"), S("221 2.0.0 Bye\r\n", "", "close")}},
      {"helo_fallback",
       {S(kGreeting, kEhlo), S("502 5.5.2 what\r\n", "HELO client.test\r\n"),
        S("250 mx.test\r\n", "", "ready"),
        B(TxX(), "MAIL FROM:<a@src.test>\r\n"), S("250 Ok\r\n", kRcptX),
        S("250 Ok\r\n", "DATA\r\n"), S("354 go\r\n", "", "body:dot"), Do(kBodySent),
        S("250 Ok\r\n", "", "done(10:D:250:2.0.0) ready"), Do(kQuit, "QUIT\r\n"),
        Do(kLost, "", "close")}},
      {"helo_refused_too",
       {S(kGreeting, kEhlo), S("500 no\r\n", "HELO client.test\r\n"),
        S("550 go away\r\n", "QUIT\r\n"), S("221 bye\r\n", "", "close")},
       "helo-rejected"},
      {"ehlo_4xx_no_fallback",
       {S(kGreeting, kEhlo), S("451 later\r\n", "QUIT\r\n"), Do(kLost, "", "close")},
       "helo-rejected"},
      {"pipelining_one_group",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"), B(TxXYZ(), kMailRcptXYZData),
        S("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n"
          "452 4.5.3 Too many\r\n354 go\r\n",
          "", "body:dot"),
        Do(kBodySent),
        S("250 2.0.0 queued\r\n", "",
          "done(10:D:250:2.0.0,11:P:550:5.1.1,12:T:452:4.5.3) ready")},
       "none", ClientState::kReady},
      {"pipelining_replies_one_by_one",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"), B(TxXYZ(), kMailRcptXYZData),
        S("250 2.1.0 Ok\r\n"), S("250 2.1.5 Ok\r\n"), S("250 2.1.5 Ok\r\n"),
        S("250 2.1.5 Ok\r\n"), S("354 go\r\n", "", "body:dot"), Do(kBodySent),
        S("250 2.0.0 queued\r\n", "",
          "done(10:D:250:2.0.0,11:D:250:2.0.0,12:D:250:2.0.0) ready")},
       "none", ClientState::kReady},
      {"lockstep_some_rcpts_rejected",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxXYZ(), kMail),
        S("250 Ok\r\n", kRcptX), S("450 4.2.1 busy\r\n", kRcptY),
        S("550 5.1.1 unknown\r\n", kRcptZ), S("250 Ok\r\n", "DATA\r\n"),
        S("354 go\r\n", "", "body:dot"), Do(kBodySent),
        S("250 Ok\r\n", "", "done(10:T:450:4.2.1,11:P:550:5.1.1,12:D:250:2.0.0) ready")},
       "none", ClientState::kReady},
      {"lockstep_all_rcpts_rejected_then_rset",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(Tx({"x@dst.test", "y@dst.test"}),
                                                              kMail),
        S("250 Ok\r\n", kRcptX), S("550 5.1.1 no\r\n", kRcptY),
        S("451 4.3.0 later\r\n", "", "done(10:P:550:5.1.1,11:T:451:4.3.0) ready"),
        B(TxX(), "RSET\r\n"), S("250 2.0.0 Ok\r\n", kMail), S("250 Ok\r\n", kRcptX),
        S("550 5.1.1 no\r\n", "", "done(10:P:550:5.1.1) ready"), Do(kQuit, "QUIT\r\n"),
        S("221 Bye\r\n", "", "close")}},
      {"pipelined_all_rcpts_rejected",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(Tx({"x@dst.test", "y@dst.test"}), absl::StrCat(kMail, kRcptX, kRcptY, "DATA\r\n")),
        S("250 Ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 no valid recipients\r\n", "",
          "done(10:P:550:5.1.1,11:P:550:5.1.1) ready"),
        B(TxX(), absl::StrCat("RSET\r\n", kMail, kRcptX, "DATA\r\n")),
        S("250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n", "", "body:dot"), Do(kBodySent),
        S("250 Ok\r\n", "", "done(10:D:250:2.0.0) ready")},
       "none", ClientState::kReady},
      {"pipelined_all_rejected_but_data_354",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(TxX(), absl::StrCat(kMail, kRcptX, "DATA\r\n")),
        S("250 Ok\r\n550 5.1.1 no\r\n354 go\r\n", ".\r\n"),
        S("250 2.0.0 empty message\r\n", "", "done(10:P:550:5.1.1) ready"),
        B(TxX(), absl::StrCat(kMail, kRcptX, "DATA\r\n"))},
       "none", ClientState::kMail},
      {"mail_4xx_lockstep",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxXYZ(), kMail),
        S("451 4.3.2 try later\r\n", "",
          "done(10:T:451:4.3.2,11:T:451:4.3.2,12:T:451:4.3.2) ready"),
        B(TxX(), kMail)},
       "none", ClientState::kMail},
      {"mail_5xx_lockstep",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxXYZ(), kMail),
        S("553 5.7.1 sender rejected\r\n", "",
          "done(10:P:553:5.7.1,11:P:553:5.7.1,12:P:553:5.7.1) ready")},
       "none", ClientState::kReady},
      {"mail_5xx_pipelined",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"), B(TxXYZ(), kMailRcptXYZData),
        S("550 5.7.1 no\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n"
          "503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n",
          "", "done(10:P:550:5.7.1,11:P:550:5.7.1,12:P:550:5.7.1) ready"),
        B(TxX(), absl::StrCat(kMail, kRcptX, "DATA\r\n"))},
       "none", ClientState::kMail},
      {"data_4xx",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(Tx({"x@dst.test", "y@dst.test"}),
                                                              kMail),
        S("250 Ok\r\n", kRcptX), S("550 5.1.1 no\r\n", kRcptY), S("250 Ok\r\n", "DATA\r\n"),
        S("451 4.3.0 not now\r\n", "", "done(10:P:550:5.1.1,11:T:451:4.3.0) ready"),
        B(TxX(), "RSET\r\n")},
       "none", ClientState::kReset},
      {"data_5xx",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "DATA\r\n"),
        S("554 5.7.1 go away\r\n", "", "done(10:P:554:5.7.1) ready")},
       "none", ClientState::kReady},
      {"final_4xx",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "DATA\r\n"), S("354 go\r\n", "", "body:dot"),
        Do(kBodySent), S("451 4.7.1 greylisted\r\n", "", "done(10:T:451:4.7.1) ready"),
        B(TxX(), kMail)},
       "none", ClientState::kMail},
      {"final_5xx_multiline",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "DATA\r\n"), S("354 go\r\n", "", "body:dot"),
        Do(kBodySent),
        S("554-5.7.1 spam\r\n554-5.7.1 see https://x.test/\r\n554 5.7.1 bye\r\n", "",
          "done(10:P:554:5.7.1) ready")},
       "none", ClientState::kReady},
      {"421_mid_transaction",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxXYZ(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", kRcptY), S("550 5.1.1 no\r\n", kRcptZ),
        S("421 4.3.2 shutting down\r\n", "",
          "done(10:T:421:4.3.2,11:P:550:5.1.1,12:T:421:4.3.2) close")},
       "server-closing"},
      {"421_greeting",
       {S("421 4.3.2 busy\r\n", "", "close")}, "server-closing"},
      {"554_greeting_quits",
       {S("554 5.7.1 no service\r\n", "QUIT\r\n"), S("221 bye\r\n", "", "close")},
       "greeting-rejected"},
      {"421_while_idle",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"),
        S("421 4.4.2 idle timeout\r\n", "", "close")},
       "server-closing"},
      {"connection_reuse",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(TxX(), absl::StrCat(kMail, kRcptX, "DATA\r\n")),
        S("250 Ok\r\n250 Ok\r\n354 go\r\n", "", "body:dot"), Do(kBodySent),
        S("250 Ok\r\n", "", "done(10:D:250:2.0.0) ready"),
        B(Tx({"y@dst.test"}), absl::StrCat(kMail, kRcptY, "DATA\r\n")),
        S("250 Ok\r\n250 Ok\r\n354 go\r\n", "", "body:dot"), Do(kBodySent),
        S("250 Ok\r\n", "", "done(10:D:250:2.0.0) ready"), Do(kQuit, "QUIT\r\n"),
        S("221 Bye\r\n", "", "close")}},
      {"garbage_after_ehlo",
       {S(kGreeting, kEhlo), S("hello there\r\n", "", "close")}, "protocol-error"},
      {"garbage_mid_transaction",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(TxX(), absl::StrCat(kMail, kRcptX, "DATA\r\n")),
        S("250 Ok\r\n25", ""), S("0 Ok\r\n999 what\r\n", "", "done(10:T:-:4.5.0) close")},
       "protocol-error"},
      {"mismatched_multiline_codes",
       {S(kGreeting, kEhlo), S("250-mx.test\r\n251 PIPELINING\r\n", "", "close")},
       "protocol-error"},
      {"unexpected_reply_while_idle",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), S("250 surprise\r\n", "", "close")},
       "protocol-error"},
      {"extra_pipelined_reply",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(TxX(), absl::StrCat(kMail, kRcptX, "DATA\r\n")),
        S("250 Ok\r\n250 Ok\r\n354 go\r\n250 extra\r\n", "", "body:dot done(10:T:-:4.5.0) close")},
       "protocol-error"},
      {"3xx_to_rcpt",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("354 what\r\n", "", "done(10:T:-:4.5.0) close")},
       "protocol-error"},
      {"timeout_waiting_for_rcpt",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(Tx({"x@dst.test", "y@dst.test"}),
                                                              kMail),
        S("250 Ok\r\n", kRcptX), S("550 5.1.1 no\r\n", kRcptY),
        Do(kTimeout, "", "done(10:P:550:5.1.1,11:T:-:4.4.2) close")},
       "timeout"},
      {"timeout_while_idle_is_stale",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), Do(kTimeout),
        Do(kQuit, "QUIT\r\n"), Do(kTimeout, "", "close")},
       "none"},
      {"connection_lost_during_body",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "DATA\r\n"), S("354 go\r\n", "", "body:dot"),
        Do(kLost, "", "done(10:T:-:4.4.2) close"), Do(kBodySent)},
       "connection-lost"},
      {"connection_lost_awaiting_final_reply",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "DATA\r\n"), S("354 go\r\n", "", "body:dot"),
        Do(kBodySent), Do(kLost, "", "done(10:T:-:4.4.2) close")},
       "connection-lost"},
      {"body_read_failed",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "DATA\r\n"), S("354 go\r\n", "", "body:dot"),
        Do(kBodyFailed, "", "done(10:T:-:4.3.0) close")},
       "body-failed"},
      {"reply_during_body",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "DATA\r\n"), S("354 go\r\n", "", "body:dot"),
        S("552 5.3.4 too big\r\n", "", "done(10:P:552:5.3.4) close"), Do(kBodySent)},
       "protocol-error"},
      {"starttls_opportunistic",
       {S(kGreeting, kEhlo), S(kEhloTls, "STARTTLS\r\n"), S("220 2.0.0 go\r\n", "", "starttls"),
        Do(kTlsOk, kEhlo), S("250-mx.test\r\n250 PIPELINING\r\n", "", "ready")},
       "none", ClientState::kReady, WithTls(config::OutboundTls::kOpportunistic)},
      {"starttls_refused_opportunistic",
       {S(kGreeting, kEhlo), S(kEhloTls, "STARTTLS\r\n"), S("454 4.7.0 no TLS\r\n", "", "ready"),
        B(TxX(), "MAIL FROM:<a@src.test>\r\nRCPT TO:<x@dst.test>\r\nDATA\r\n")},
       "none", ClientState::kMail, WithTls(config::OutboundTls::kOpportunistic)},
      {"starttls_refused_required",
       {S(kGreeting, kEhlo), S(kEhloTls, "STARTTLS\r\n"), S("454 4.7.0 no TLS\r\n", "QUIT\r\n")},
       "tls-unavailable", ClientState::kQuit, WithTls(config::OutboundTls::kRequired)},
      {"starttls_required_not_offered",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "QUIT\r\n"), S("221 bye\r\n", "", "close")},
       "tls-unavailable", ClientState::kClosed, WithTls(config::OutboundTls::kVerify)},
      {"starttls_injection",
       {S(kGreeting, kEhlo), S(kEhloTls, "STARTTLS\r\n"),
        S("220 2.0.0 go\r\n250-mx.test\r\n250 8BITMIME\r\n", "", "starttls close")},
       "protocol-error", ClientState::kClosed, WithTls(config::OutboundTls::kOpportunistic)},
      {"starttls_handshake_failed",
       {S(kGreeting, kEhlo), S(kEhloTls, "STARTTLS\r\n"), S("220 2.0.0 go\r\n", "", "starttls"),
        Do(kTlsFail, "", "close")},
       "tls-failed", ClientState::kClosed, WithTls(config::OutboundTls::kOpportunistic)},
      {"tls_off_ignores_starttls",
       {S(kGreeting, kEhlo), S(kEhloTls, "", "ready")}, "none", ClientState::kReady},
      {"eight_bit_to_7bit_server_bounces",
       {S(kGreeting, kEhlo), S("250 mx.test\r\n", "", "ready"),
        B(Tx({"x@dst.test", "y@dst.test"}, BodyType::k8BitMime), "",
          "done(10:P:-:5.6.3,11:P:-:5.6.3) ready")},
       "none", ClientState::kReady},
      {"eight_bit_sent_anyway",
       {S(kGreeting, kEhlo), S("250 mx.test\r\n", "", "ready"),
        B(Tx({"x@dst.test"}, BodyType::k8BitMime), "MAIL FROM:<a@src.test>\r\n")},
       "none", ClientState::kMail, SendEightBitAnyway()},
      {"eight_bit_declared",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(Tx({"x@dst.test"}, BodyType::k8BitMime),
          absl::StrCat("MAIL FROM:<a@src.test> SIZE=100 BODY=8BITMIME\r\n", kRcptX, "DATA\r\n"))},
       "none", ClientState::kMail},
      {"size_over_announced_limit",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(Tx({"x@dst.test"}, BodyType::k7Bit, 10001), "", "done(10:P:-:5.3.4) ready")},
       "none", ClientState::kReady},
      {"unsafe_recipient_address",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(Tx({"x@dst.test\r\nRSET", "y@dst.test"}),
          absl::StrCat(kMail, kRcptY, "DATA\r\n")),
        S("250 Ok\r\n250 Ok\r\n354 go\r\n", "", "body:dot"), Do(kBodySent),
        S("250 Ok\r\n", "", "done(10:P:-:5.1.3,11:D:250:2.0.0) ready")},
       "none", ClientState::kReady},
      {"utf8_address_without_smtputf8",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(Tx({"j\xc3\xb6rg@dst.test"}), "", "done(10:P:-:5.6.7) ready")},
       "none", ClientState::kReady},
      {"utf8_address_with_smtputf8",
       {S(kGreeting, kEhlo), S("250-mx.test\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n", "", "ready"),
        B(Tx({"j\xc3\xb6rg@dst.test"}),
          "MAIL FROM:<a@src.test> SMTPUTF8\r\nRCPT TO:<j\xc3\xb6rg@dst.test>\r\nDATA\r\n")},
       "none", ClientState::kMail},
      {"chunking_bdat",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(Tx({"x@dst.test", "y@dst.test"}), absl::StrCat(kMail, kRcptX, kRcptY)),
        S("250 Ok\r\n250 Ok\r\n550 5.1.1 no\r\n", "BDAT 100 LAST\r\n", "body:raw"),
        Do(kBodySent), S("250 2.0.0 Ok\r\n", "", "done(10:D:250:2.0.0,11:P:550:5.1.1) ready"),
        B(TxX(), absl::StrCat(kMail, kRcptX))},
       "none", ClientState::kMail, WithChunking()},
      {"chunking_all_rejected_sends_no_body",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"), B(TxX(), absl::StrCat(kMail, kRcptX)),
        S("250 Ok\r\n550 5.1.1 no\r\n", "", "done(10:P:550:5.1.1) ready"),
        B(TxX(), absl::StrCat("RSET\r\n", kMail, kRcptX))},
       "none", ClientState::kReset, WithChunking()},
      {"binary_needs_binarymime",
       {S(kGreeting, kEhlo), S(kEhloPipelining, "", "ready"),
        B(Tx({"x@dst.test"}, BodyType::kBinaryMime), "", "done(10:P:-:5.6.3) ready")},
       "none", ClientState::kReady},
      {"binary_uses_bdat",
       {S(kGreeting, kEhlo), S("250-mx.test\r\n250-CHUNKING\r\n250 BINARYMIME\r\n", "", "ready"),
        B(Tx({"x@dst.test"}, BodyType::kBinaryMime), "MAIL FROM:<a@src.test> BODY=BINARYMIME\r\n"),
        S("250 Ok\r\n", kRcptX), S("250 Ok\r\n", "BDAT 100 LAST\r\n", "body:raw")},
       "none", ClientState::kBody},
      {"rset_refused",
       {S(kGreeting, kEhlo), S(kEhloLockstep, "", "ready"), B(TxX(), kMail),
        S("250 Ok\r\n", kRcptX), S("550 no\r\n", "", "done(10:P:550:5.0.0) ready"),
        B(TxX(), "RSET\r\n"), S("500 what\r\n", "QUIT\r\n", "done(10:T:-:4.4.2)"),
        S("221 bye\r\n", "", "close")},
       "reset-failed"},
      {"bare_lf_replies",
       {S("220 mx.test\n", kEhlo), S("250-mx.test\n250 PIPELINING\n", "", "ready")},
       "none", ClientState::kReady},
  };
}

TEST(ClientMachineTest, Dialogues) {
  for (const Case& c : Dialogues()) {
    RunDialogue(c, [](size_t, size_t) { return std::vector<size_t>{}; }, "");
  }
}

// Every server step split in two at every byte boundary must behave like the whole.
TEST(ClientMachineTest, DialoguesSplitAtEveryByte) {
  for (const Case& c : Dialogues()) {
    size_t longest = 0;
    for (const Step& s : c.steps) longest = std::max(longest, s.server.size());
    for (size_t cut = 1; cut < longest; ++cut) {
      RunDialogue(c, [cut](size_t, size_t) { return std::vector<size_t>{cut}; },
          absl::StrCat(" cut@", cut));
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(ClientMachineTest, DialoguesOneByteAtATime) {
  for (const Case& c : Dialogues()) {
    RunDialogue(c,
        [](size_t, size_t size) {
          std::vector<size_t> cuts;
          for (size_t i = 1; i < size; ++i) cuts.push_back(i);
          return cuts;
        },
        " bytewise");
  }
}

TEST(ClientMachineTest, DeadlinesFollowTheAwaitedReply) {
  ClientMachine m(Case::DefaultOptions());
  EXPECT_EQ(m.deadline(), ClientDeadline::kNone);
  m.Start();
  EXPECT_EQ(m.deadline(), ClientDeadline::kGreeting);
  m.Feed(kGreeting);
  EXPECT_EQ(m.deadline(), ClientDeadline::kCommand);
  m.Feed(kEhloLockstep);
  EXPECT_EQ(m.deadline(), ClientDeadline::kNone);  // idle between transactions
  m.Begin(TxX());
  EXPECT_EQ(m.deadline(), ClientDeadline::kMail);
  m.Feed("250 Ok\r\n");
  EXPECT_EQ(m.deadline(), ClientDeadline::kRcpt);
  m.Feed("250 Ok\r\n");
  EXPECT_EQ(m.deadline(), ClientDeadline::kDataInit);
  m.Feed("354 go\r\n");
  EXPECT_EQ(m.deadline(), ClientDeadline::kDataBlock);
  m.BodySent();
  EXPECT_EQ(m.deadline(), ClientDeadline::kDataTerm);
  m.Feed("250 Ok\r\n");
  EXPECT_EQ(m.deadline(), ClientDeadline::kNone);
  EXPECT_TRUE(m.reusable());
  m.Quit();
  EXPECT_EQ(m.deadline(), ClientDeadline::kCommand);
  EXPECT_FALSE(m.reusable());

  config::GlobalOptions global;
  global.smtp_greeting_timeout = absl::Minutes(5);
  global.smtp_command_timeout = absl::Minutes(5);
  global.smtp_data_init_timeout = absl::Minutes(2);
  global.smtp_data_block_timeout = absl::Minutes(3);
  global.smtp_data_term_timeout = absl::Minutes(10);
  EXPECT_EQ(DeadlineDuration(ClientDeadline::kDataInit, global), absl::Minutes(2));
  EXPECT_EQ(DeadlineDuration(ClientDeadline::kDataBlock, global), absl::Minutes(3));
  EXPECT_EQ(DeadlineDuration(ClientDeadline::kDataTerm, global), absl::Minutes(10));
  EXPECT_EQ(DeadlineDuration(ClientDeadline::kRcpt, global), absl::Minutes(5));
  EXPECT_EQ(DeadlineDuration(ClientDeadline::kNone, global), absl::ZeroDuration());
}

TEST(ClientMachineTest, ResultsCarryReplyTextAndExtensions) {
  ClientMachine m(Case::DefaultOptions());
  m.Start();
  m.Feed(kGreeting);
  m.Feed(kEhloPipelining);
  EXPECT_TRUE(m.extensions().pipelining);
  EXPECT_EQ(m.extensions().size_bytes_max, 10000u);
  EXPECT_EQ(m.extensions().server_name, "mx.test");
  (void)m.TakeOutput();
  while (m.TakeAction()) {
  }
  m.Begin(Tx({"x@dst.test", "y@dst.test"}));
  m.Feed("250 Ok\r\n550-5.1.1 The email account that you tried\r\n"
         "550 5.1.1 to reach does not exist\r\n250 Ok\r\n354 go\r\n");
  std::optional<ClientAction> body = m.TakeAction();
  ASSERT_TRUE(body.has_value());
  EXPECT_EQ(body->kind, ClientAction::Kind::kSendBody);
  m.BodySent();
  m.Feed("250 2.0.0 Ok: queued as ABC\r\n");
  std::optional<ClientAction> done = m.TakeAction();
  ASSERT_TRUE(done.has_value());
  ASSERT_EQ(done->kind, ClientAction::Kind::kTransactionDone);
  ASSERT_EQ(done->result.recipients.size(), 2u);
  EXPECT_EQ(done->result.recipients[0].diagnostic,
            "550 5.1.1 The email account that you tried to reach does not exist");
  EXPECT_EQ(done->result.recipients[0].outcome, RecipientOutcome::kPermanent);
  EXPECT_EQ(done->result.recipients[1].diagnostic, "250 2.0.0 Ok: queued as ABC");
  EXPECT_EQ(done->result.recipients[1].outcome, RecipientOutcome::kDelivered);
  EXPECT_EQ(m.transactions_done(), 1u);
}

TEST(ClientMachineTest, ProtocolErrorExplainsItself) {
  ClientMachine m(Case::DefaultOptions());
  m.Start();
  m.Feed(std::string("220 mx\0test\r\n", sizeof("220 mx\0test\r\n") - 1));
  EXPECT_TRUE(m.closed());
  EXPECT_EQ(m.failure().kind, ClientFailureKind::kProtocolError);
  EXPECT_NE(m.failure().diagnostic.find("NUL"), std::string::npos) << m.failure().diagnostic;
  m.Feed("250 more\r\n");  // ignored once closed
  m.ConnectionLost();
  EXPECT_EQ(m.TakeOutput(), "");
}

// A 421 right behind the final reply, in the same read: the kReady the final reply
// queued is withdrawn, so the caller never Begins on a dead connection.
TEST(ClientMachineTest, ReadyIsWithdrawnWhenTheConnectionEnds) {
  ClientMachine m(Case::DefaultOptions());
  m.Start();
  m.Feed(kGreeting);
  m.Feed(kEhloPipelining);
  (void)m.TakeOutput();
  EXPECT_EQ(TakeActions(m), "ready");
  ASSERT_TRUE(m.Begin(TxX()));
  EXPECT_EQ(m.TakeOutput(), absl::StrCat(kMail, kRcptX, "DATA\r\n"));
  m.Feed("250 Ok\r\n250 Ok\r\n354 go\r\n");
  EXPECT_EQ(TakeActions(m), "body:dot");
  m.BodySent();
  m.Feed("250 2.0.0 Ok\r\n421 4.3.2 going down\r\n");
  EXPECT_EQ(TakeActions(m), "done(10:D:250:2.0.0) close");
  EXPECT_FALSE(m.reusable());
  EXPECT_FALSE(m.Begin(TxX()));  // too late: the caller keeps its transaction
  m.Quit();                      // a no-op once closed
  EXPECT_EQ(m.TakeOutput(), "");
  EXPECT_EQ(TakeActions(m), "");
}

TEST(ClientMachineTest, UnsafeHeloNameIsReplaced) {
  ClientOptions options;
  options.helo_name = "evil\r\nRSET";
  ClientMachine m(options);
  m.Start();
  m.Feed(kGreeting);
  EXPECT_EQ(m.TakeOutput(), "EHLO localhost\r\n");
}

TEST(ClientMachineTest, ParseMailParams) {
  EXPECT_EQ(ParseMailParams("").body, BodyType::k7Bit);
  EXPECT_EQ(ParseMailParams("BODY=8BITMIME").body, BodyType::k8BitMime);
  EXPECT_EQ(ParseMailParams("size=10 body=binarymime").body, BodyType::kBinaryMime);
  EXPECT_EQ(ParseMailParams("BODY=7BIT").body, BodyType::k7Bit);
  EXPECT_TRUE(ParseMailParams("SIZE=5 SMTPUTF8").smtputf8);
  EXPECT_FALSE(ParseMailParams("SMTPUTF8X=1").smtputf8);
}

// Many transactions on one connection: nothing per-transaction leaks into the next.
TEST(ClientMachineTest, ManyTransactionsOnOneConnection) {
  ClientMachine m(Case::DefaultOptions());
  m.Start();
  m.Feed(kGreeting);
  m.Feed(kEhloPipelining);
  (void)m.TakeOutput();
  while (m.TakeAction()) {
  }
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(m.reusable());
    m.Begin(TxXYZ());
    bool reject_all = i % 3 == 0;
    std::string sent = m.TakeOutput();
    EXPECT_NE(sent.find(kMailRcptXYZData), std::string::npos);
    if (reject_all) {
      m.Feed(absl::StrCat(sent.rfind("RSET", 0) == 0 ? "250 Ok\r\n" : "",
                          "250 Ok\r\n550 no\r\n550 no\r\n550 no\r\n554 no rcpts\r\n"));
    } else {
      m.Feed(absl::StrCat(sent.rfind("RSET", 0) == 0 ? "250 Ok\r\n" : "",
                          "250 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"));
      std::optional<ClientAction> body = m.TakeAction();
      ASSERT_TRUE(body.has_value());
      EXPECT_EQ(body->kind, ClientAction::Kind::kSendBody);
      m.BodySent();
      m.Feed("250 Ok\r\n");
    }
    std::optional<ClientAction> done = m.TakeAction();
    ASSERT_TRUE(done.has_value());
    ASSERT_EQ(done->kind, ClientAction::Kind::kTransactionDone);
    for (const RecipientResult& r : done->result.recipients) {
      EXPECT_EQ(r.outcome, reject_all ? RecipientOutcome::kPermanent
                                      : RecipientOutcome::kDelivered);
    }
    std::optional<ClientAction> ready = m.TakeAction();
    ASSERT_TRUE(ready.has_value());
    EXPECT_EQ(ready->kind, ClientAction::Kind::kReady);
  }
  EXPECT_EQ(m.transactions_done(), 200u);
}

}  // namespace
}  // namespace ringmail::delivery

namespace ringmail::delivery {
namespace {

// A seeded random server against the machine, with the I/O layer's events at random
// moments: whatever the server says, the machine never trips an internal check, decides
// every recipient exactly once, and ends with kClose as its last action.
TEST(ClientMachineTest, RandomServerNeverBreaksInvariants) {
  std::mt19937_64 rng(5321);
  const std::vector<std::string> replies = {
      "220 mx\r\n", "250 Ok\r\n", "250-mx\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n",
      "354 go\r\n", "421 4.3.2 bye\r\n", "450 4.2.1 busy\r\n", "550 5.1.1 no\r\n",
      "503 5.5.1 seq\r\n", "221 bye\r\n", "garbage\r\n", "250-partial", " tail\r\n", "\n",
      "250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n", "502 5.5.2 no EHLO\r\n", "220 2.0.0 TLS go\r\n"};
  int transactions = 0;
  for (int run = 0; run < 3000; ++run) {
    ClientOptions options = Case::DefaultOptions();
    options.tls = rng() % 2 ? config::OutboundTls::kOpportunistic : config::OutboundTls::kOff;
    options.prefer_chunking = rng() % 2;
    ClientMachine machine(options);
    machine.Start();
    std::optional<size_t> open_recipients;
    bool closed = false;
    for (int step = 0; step < 40 && !closed; ++step) {
      switch (rng() % 8) {
        case 0: machine.Timeout(); break;
        case 1:
          if (machine.state() == ClientState::kBody) machine.BodySent();
          break;
        case 2:
          if (machine.state() == ClientState::kTlsHandshake) machine.TlsEstablished();
          break;
        default: machine.Feed(replies[rng() % replies.size()]); break;
      }
      if (rng() % 50 == 0) machine.ConnectionLost();
      (void)machine.TakeOutput();
      while (std::optional<ClientAction> action = machine.TakeAction()) {
        ASSERT_FALSE(closed) << "an action after kClose";
        switch (action->kind) {
          case ClientAction::Kind::kClose: closed = true; break;
          case ClientAction::Kind::kTransactionDone:
            ASSERT_TRUE(open_recipients.has_value());
            ASSERT_EQ(action->result.recipients.size(), *open_recipients);
            for (size_t i = 0; i < *open_recipients; ++i) {
              ASSERT_EQ(action->result.recipients[i].index, 10 + i);
            }
            open_recipients.reset();
            ++transactions;
            break;
          case ClientAction::Kind::kReady: {
            // A kReady that is handed out is never stale.
            ASSERT_EQ(machine.state(), ClientState::kReady);
            Transaction tx = rng() % 2 ? TxX() : TxXYZ();
            open_recipients = tx.recipients.size();
            ASSERT_TRUE(machine.Begin(std::move(tx)));
            break;
          }
          default: break;
        }
      }
    }
    EXPECT_EQ(closed, machine.closed());
    if (closed) {
      EXPECT_FALSE(open_recipients.has_value()) << "a transaction was never done";
    }
  }
  EXPECT_GT(transactions, 100);
}

}  // namespace
}  // namespace ringmail::delivery
