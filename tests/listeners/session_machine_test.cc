// Table-driven dialogues against the pure ESMTP session machine: client bytes in, reply
// codes, flushes and actions out. The Client below drives the machine exactly the way the
// header comment of session_machine.h tells an I/O layer to.
#include "listeners/esmtp/session_machine.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace ringmail::listeners::esmtp {
namespace {

constexpr uint64_t kNowMs = 1700000000000;  // Tue, 14 Nov 2023 22:13:20 +0000

PolicyOptions DefaultPolicy() {
  PolicyOptions options;
  options.relay_hosts = {"127.0.0.0/8", "::1"};
  options.relay_domains = {"example.com"};
  return options;
}

SessionLimits DefaultLimits() {
  SessionLimits limits;
  limits.max_message_size_bytes = 10000;
  limits.max_recipients = 3;
  limits.max_errors = 100;
  return limits;
}

// Plays the I/O layer: feeds bytes, pumps actions and output, grants slots, completes
// commits (synchronously unless told otherwise) and checks slot accounting.
class Client {
 public:
  explicit Client(SessionLimits limits = DefaultLimits(), PolicyOptions policy = DefaultPolicy(),
                  std::string peer = "127.0.0.1", uint16_t port = 12345)
      : policy_(Policy::Create(policy).value()),
        machine_(std::make_unique<SessionMachine>(limits, policy_, ids_)) {
    machine_->Start(peer, port, "mx.test");
    greeting = Drain();
  }
  ~Client() {
    // However the test ended, a closed session holds no slot.
    if (machine_->closed()) {
      EXPECT_EQ(slots_held + slots_waiting, 0);
    }
  }

  // Sends bytes as one recv completion and returns everything the machine wrote back.
  std::string Send(std::string_view bytes) {
    size_t used = machine_->Feed(bytes, kNowMs);
    last_feed_used = used;
    EXPECT_EQ(used, bytes.size()) << "pending buffer full";
    return Drain();
  }
  std::string Line(std::string_view command) { return Send(std::string(command) + "\r\n"); }

  std::string Drain() {
    std::string all;
    for (;;) {
      while (std::optional<Action> a = machine_->TakeAction()) Execute(std::move(*a));
      if (machine_->CanContinue()) {
        machine_->Continue(kNowMs);
        continue;
      }
      if (!machine_->HasOutput()) break;
      std::string out = machine_->TakeOutput();
      flushes.push_back(out);
      all += out;
    }
    return all;
  }

  std::string GrantSlot() {
    EXPECT_EQ(slots_waiting, 1);
    slots_waiting = 0;
    ++slots_held;
    machine_->SlotGranted();
    return Drain();
  }
  std::string FinishCommit(absl::Status status) {
    machine_->CommitDone(status);
    return Drain();
  }
  std::string Shutdown() {
    machine_->Shutdown();
    return Drain();
  }
  std::string Timeout() {
    machine_->Timeout();
    return Drain();
  }
  std::string TlsDone() {
    machine_->TlsEstablished();
    return Drain();
  }

  // Envelope in one go: EHLO, MAIL, one RCPT; returns the concatenated replies.
  std::string Envelope(std::string_view rcpt = "x@example.com") {
    std::string out = Line("EHLO client.example");
    out += Line("MAIL FROM:<a@b.example>");
    out += Line("RCPT TO:<" + std::string(rcpt) + ">");
    return out;
  }

  SessionMachine& m() { return *machine_; }

  std::string greeting;
  std::vector<std::string> flushes;
  std::vector<std::unique_ptr<core::Message>> commits;
  std::vector<ReplyId> refusals;  // kRefused actions, in order
  bool grant_slots = true;
  bool commit_sync = true;
  absl::Status commit_status = absl::OkStatus();
  int slots_held = 0;
  int slots_waiting = 0;
  int closes = 0;
  int starttls = 0;
  size_t last_feed_used = 0;

 private:
  void Execute(Action action) {
    switch (action.kind) {
      case Action::Kind::kNeedTransactionSlot:
        EXPECT_EQ(slots_held + slots_waiting, 0) << "one slot per session";
        if (grant_slots) {
          ++slots_held;
          machine_->SlotGranted();
        } else {
          ++slots_waiting;
        }
        break;
      case Action::Kind::kReleaseTransactionSlot:
        if (slots_waiting > 0) {
          --slots_waiting;
        } else {
          EXPECT_EQ(slots_held, 1);
          --slots_held;
        }
        break;
      case Action::Kind::kCommit:
        ASSERT_NE(action.message, nullptr);
        EXPECT_EQ(slots_held, 1) << "a commit always holds a slot";
        commits.push_back(std::move(action.message));
        if (commit_sync) machine_->CommitDone(commit_status);
        break;
      case Action::Kind::kStartTls:
        ++starttls;
        break;
      case Action::Kind::kClose:
        ++closes;
        EXPECT_EQ(closes, 1);
        break;
      case Action::Kind::kRefused:
        ASSERT_NE(action.message, nullptr);
        EXPECT_EQ(action.message->body.size(), 0u);
        refusals.push_back(action.refusal);
        break;
    }
  }

  core::MessageIdGenerator ids_{7, 0x1234};
  Policy policy_;
  std::unique_ptr<SessionMachine> machine_;
};

// "250 2.1.0", "354", "250" ... for the final line of every reply, joined by " | ".
std::string Codes(std::string_view output) {
  std::string codes;
  std::vector<std::string_view> lines;
  for (size_t start = 0; start < output.size();) {
    size_t end = output.find("\r\n", start);
    if (end == std::string_view::npos) end = output.size();
    lines.push_back(output.substr(start, end - start));
    start = end + 2;
  }
  for (std::string_view line : lines) {
    if (line.size() < 3 || (line.size() > 3 && line[3] == '-')) continue;
    std::string code(line.substr(0, 3));
    if (line.size() >= 9 && absl::ascii_isdigit(line[4]) && line[5] == '.') {
      const size_t end = line.find(' ', 4);
      code += " " + std::string(line.substr(4, end - 4));
    }
    if (!codes.empty()) codes += " | ";
    codes += code;
  }
  return codes;
}

struct Step {
  std::string send;  // sent as-is (include CRLF)
  std::string expect;
};

struct Dialogue {
  const char* name;
  std::vector<Step> steps;
  std::string peer = "127.0.0.1";
};

std::vector<Dialogue> Dialogues() {
  const std::string body = "Subject: hi\r\n\r\nbody\r\n.\r\n";
  return {
      {"basic",
       {{"EHLO client.example\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"},
        {"DATA\r\n", "354"},
        {body, "250 2.0.0"},
        {"QUIT\r\n", "221 2.0.0"}}},
      {"helo and a second transaction",
       {{"HELO client.example\r\n", "250"},
        {"MAIL FROM:<>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"},
        {"DATA\r\n", "354"},
        {body, "250 2.0.0"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RSET\r\n", "250 2.0.0"},
        {"RCPT TO:<x@example.com>\r\n", "503 5.5.1"}}},
      {"no extension after helo",
       {{"HELO client.example\r\n", "250"},
        {"MAIL FROM:<a@b.example> SIZE=100\r\n", "555 5.5.4"},
        {"MAIL FROM:<a@b.example> BODY=8BITMIME\r\n", "555 5.5.4"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"},
        // Refused, and its 10 octets swallowed, not read as a command.
        {"BDAT 10 LAST\r\nQUIT\r\nab\r\n", "502 5.5.1"},
        {"DATA\r\n", "354"},
        {body, "250 2.0.0"}}},
      {"sequencing",
       {{"MAIL FROM:<a@b.example>\r\n", "503 5.5.1"},
        {"RCPT TO:<x@example.com>\r\n", "503 5.5.1"},
        {"DATA\r\n", "503 5.5.1"},
        {"EHLO c\r\n", "250"},
        {"RCPT TO:<x@example.com>\r\n", "503 5.5.1"},
        {"DATA\r\n", "503 5.5.1"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"MAIL FROM:<a@b.example>\r\n", "503 5.5.1"},
        {"DATA\r\n", "503 5.5.1"},
        {"EHLO c\r\n", "250"},  // EHLO resets the transaction
        {"RCPT TO:<x@example.com>\r\n", "503 5.5.1"}}},
      {"syntax",
       {{"EHLO\r\n", "501 5.5.4"},
        {"EHLO a b\r\n", "501 5.5.4"},
        {"EHLO c\r\n", "250"},
        {"MAIL FROM:a@b.example\r\n", "501 5.5.4"},
        {"MAIL FROM:<a@@b.example>\r\n", "501 5.1.7"},
        {"MAIL FROM:<a@b.example> BOGUS=1\r\n", "555 5.5.4"},
        {"MAIL FROM:<a@b.example> SIZE=x\r\n", "501 5.5.4"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<>\r\n", "501 5.1.3"},
        {"RCPT TO:x@example.com\r\n", "501 5.5.4"},
        {"RCPT TO:<x@example.com> FOO=1\r\n", "555 5.5.4"},
        {"RCPT TO:<x@example.com> NOTIFY=NEVER\r\n", "555 5.5.4"},  // no DSN offered
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"},
        {"DATA now\r\n", "501 5.5.4"},
        {"RSET now\r\n", "501 5.5.4"},
        {"VRFY\r\n", "501 5.5.4"},
        {std::string("NO\0OP\r\n", 7), "501 5.5.4"},
        {"NO\rOP\r\n", "501 5.5.4"}}},
      {"other commands",
       {{"NOOP\r\n", "250 2.0.0"},
        {"NOOP anything\r\n", "250 2.0.0"},
        {"vrfy bob\r\n", "252 2.0.0"},
        {"EXPN staff\r\n", "502 5.5.1"},
        {"HELP\r\n", "214 2.0.0"},
        {"RSET\r\n", "250 2.0.0"},
        {"FOO\r\n", "500 5.5.2"},
        {"\r\n", "500 5.5.2"},
        {"AUTH PLAIN AAAA\r\n", "500 5.5.2"},
        {"STARTTLS\r\n", "502 5.5.1"},
        {"MAILFROM:<a@b>\r\n", "500 5.5.2"},
        {"quit\r\n", "221 2.0.0"}}},
      {"line length",
       {{std::string(510, 'N') + "\r\n", "500 5.5.2"},  // 512 octets: read, unknown verb
        {std::string(511, 'N') + "\r\n", "500 5.5.6"},
        {"NOOP " + std::string(5000, 'x') + "\r\n", "500 5.5.6"},
        {"NOOP\r\n", "250 2.0.0"}}},
      {"message size",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example> SIZE=10001\r\n", "552 5.3.4"},
        {"MAIL FROM:<a@b.example> SIZE=10000\r\n", "250 2.1.0"},
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"},
        {"DATA\r\n", "354"},
        {std::string(9000, 'a') + "\r\n" + std::string(1000, 'b') + "\r\n.\r\n", "552 5.3.4"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"},
        {"DATA\r\n", "354"},
        {std::string(9998, 'a') + "\r\n.\r\n", "250 2.0.0"}}},
      {"max recipients",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<r1@example.com>\r\n", "250 2.1.5"},
        {"RCPT TO:<r2@example.com>\r\n", "250 2.1.5"},
        {"RCPT TO:<r3@example.com>\r\n", "250 2.1.5"},
        {"RCPT TO:<r4@example.com>\r\n", "452 4.5.3"},
        {"DATA\r\n", "354"},
        {body, "250 2.0.0"}}},
      {"relay from an outside client",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@other.example>\r\n", "550 5.7.1"},
        {"RCPT TO:<x@EXAMPLE.Com>\r\n", "250 2.1.5"},
        {"RCPT TO:<postmaster@other.example>\r\n", "550 5.7.1"},
        {"RCPT TO:<postmaster>\r\n", "250 2.1.5"},
        {"RCPT TO:<PostMaster>\r\n", "250 2.1.5"}},
       "192.0.2.1"},
      {"no routing through a relay domain from an outside client",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<u%evil.test@example.com>\r\n", "550 5.7.1"},
        {"RCPT TO:<evil.test!u@example.com>\r\n", "550 5.7.1"},
        {"RCPT TO:<\"u@evil.test\"@example.com>\r\n", "550 5.7.1"},
        {"RCPT TO:<@hop.example:u%evil.test@example.com>\r\n", "550 5.7.1"},
        {"RCPT TO:<\"u x\"@example.com>\r\n", "250 2.1.5"}},
       "192.0.2.1"},
      {"a relay host may route",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<u%evil.test@example.com>\r\n", "250 2.1.5"}}},
      {"relay from an IPv6 relay host",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@other.example>\r\n", "250 2.1.5"}},
       "::1"},
      {"relay from an outside IPv6 client",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@other.example>\r\n", "550 5.7.1"},
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"}},
       "2001:db8::5"},
      {"relay from a dual-stack mapped address",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<x@other.example>\r\n", "250 2.1.5"}},
       "::ffff:127.0.0.1"},
      {"smtputf8",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<j\xc3\xb6rg@b.example>\r\n", "553 5.6.7"},
        {"MAIL FROM:<a@b.example>\r\n", "250 2.1.0"},
        {"RCPT TO:<\xc3\xbc@example.com>\r\n", "553 5.6.7"},
        {"RSET\r\n", "250 2.0.0"},
        {"MAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8\r\n", "250 2.1.0"},
        {"RCPT TO:<\xc3\xbc@example.com>\r\n", "250 2.1.5"}}},
      {"binarymime needs BDAT",
       {{"EHLO c\r\n", "250"},
        {"MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n", "250 2.1.0"},
        {"RCPT TO:<x@example.com>\r\n", "250 2.1.5"},
        {"DATA\r\n", "503 5.5.1"},
        {std::string("BDAT 5 LAST\r\na\0\nb\r", 18), "250 2.0.0"}}},
      {"http on the smtp port",
       {{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "421 4.7.0"}}},
  };
}

TEST(SessionDialogueTest, Table) {
  for (const Dialogue& d : Dialogues()) {
    Client client(DefaultLimits(), DefaultPolicy(), d.peer);
    EXPECT_EQ(client.greeting, "220 mx.test ESMTP ringmail\r\n") << d.name;
    for (size_t i = 0; i < d.steps.size(); ++i) {
      const Step& step = d.steps[i];
      ASSERT_FALSE(client.m().closed()) << d.name << " step " << i;
      EXPECT_EQ(Codes(client.Send(step.send)), step.expect) << d.name << " step " << i;
    }
  }
}

TEST(SessionMachineTest, CommittedMessageCarriesEnvelopeAndTraceHeader) {
  Client client(DefaultLimits(), DefaultPolicy(), "192.0.2.1", 2525);
  client.Line("EHLO client.example");
  client.Line("MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME");
  client.Line("RCPT TO:<x@example.com>");
  client.Line("DATA");
  const std::string reply = client.Send("Subject: t\r\n\r\n..dot\r\n.\r\n");
  ASSERT_EQ(client.commits.size(), 1u);
  const core::Message& m = *client.commits[0];
  EXPECT_EQ(reply, "250 2.0.0 Ok: queued as " + m.id.ToHex() + "\r\n");
  EXPECT_FALSE(m.id.IsZero());
  EXPECT_EQ(m.received_ms, kNowMs);
  EXPECT_EQ(m.envelope.mail_from, "a@b.example");
  EXPECT_EQ(m.envelope.mail_params, "SIZE=100 BODY=8BITMIME");
  ASSERT_EQ(m.envelope.recipients.size(), 1u);
  EXPECT_EQ(m.envelope.recipients[0].address, "x@example.com");
  EXPECT_EQ(m.envelope.recipients[0].params, "");
  EXPECT_EQ(m.envelope.helo, "client.example");
  EXPECT_EQ(m.envelope.peer, "192.0.2.1:2525");
  EXPECT_EQ(m.body.ToString(), "Subject: t\r\n\r\n.dot\r\n");
  EXPECT_EQ(m.received_header,
            "Received: from client.example ([192.0.2.1])\r\n"
            "\tby mx.test (ringmail) with ESMTP id " + m.id.ToHex() + "\r\n"
            "\tfor <x@example.com>;\r\n"
            "\tTue, 14 Nov 2023 22:13:20 +0000\r\n");
}

TEST(SessionMachineTest, TraceHeaderVariants) {
  {  // HELO, two recipients, IPv6: "with SMTP", no "for", IPv6 literal.
    Client client(DefaultLimits(), DefaultPolicy(), "2001:db8::5", 25);
    client.Line("HELO h");
    client.Line("MAIL FROM:<>");
    client.Line("RCPT TO:<x@example.com>");
    client.Line("RCPT TO:<y@example.com>");
    client.Line("DATA");
    client.Send(".\r\n");
    ASSERT_EQ(client.commits.size(), 1u);
    const core::Message& m = *client.commits[0];
    EXPECT_EQ(m.envelope.peer, "[2001:db8::5]:25");
    EXPECT_EQ(m.received_header,
              "Received: from h ([IPv6:2001:db8::5])\r\n"
              "\tby mx.test (ringmail) with SMTP id " + m.id.ToHex() + ";\r\n"
              "\tTue, 14 Nov 2023 22:13:20 +0000\r\n");
    EXPECT_EQ(m.body.size(), 0u);
  }
  {  // SMTPUTF8 transaction: "with UTF8SMTP".
    Client client;
    client.Line("EHLO h");
    client.Line("MAIL FROM:<a@b.example> SMTPUTF8");
    client.Line("RCPT TO:<x@example.com>");
    client.Line("DATA");
    client.Send("x\r\n.\r\n");
    ASSERT_EQ(client.commits.size(), 1u);
    EXPECT_NE(client.commits[0]->received_header.find(" with UTF8SMTP id "),
              std::string::npos);
  }
  // Any one-word HELO is taken, but our field must still parse: delimiters become '?', and
  // 8-bit bytes too unless the message is SMTPUTF8. The envelope keeps the word as sent.
  for (bool utf8 : {false, true}) {
    Client client;
    client.Line("EHLO (x;\\\"\xc3\xa9");
    client.Line(utf8 ? "MAIL FROM:<a@b.example> SMTPUTF8" : "MAIL FROM:<a@b.example>");
    client.Line("RCPT TO:<x@example.com>");
    client.Line("DATA");
    client.Send("x\r\n.\r\n");
    ASSERT_EQ(client.commits.size(), 1u) << utf8;
    const core::Message& m = *client.commits[0];
    EXPECT_EQ(m.received_header.substr(0, m.received_header.find(" ([")),
              utf8 ? "Received: from ?x???\xc3\xa9" : "Received: from ?x?????")
        << utf8;
    EXPECT_EQ(m.envelope.helo, "(x;\\\"\xc3\xa9");
  }
}

TEST(SessionMachineTest, EhloAdvertisesSize) {
  Client client;
  const std::string reply = client.Line("EHLO c");
  EXPECT_EQ(reply.substr(0, 13), "250-mx.test\r\n");
  EXPECT_NE(reply.find("250-SIZE 10000\r\n"), std::string::npos);
  EXPECT_NE(reply.find("250-PIPELINING\r\n"), std::string::npos);
  EXPECT_NE(reply.find("250-CHUNKING\r\n"), std::string::npos);
  EXPECT_EQ(reply.find("STARTTLS"), std::string::npos);
  EXPECT_EQ(reply.substr(reply.size() - 14), "250 SMTPUTF8\r\n");
}

// ---------------------------------------------------------------------------------------
// Pipelining (RFC 2920)

TEST(PipeliningTest, EnvelopeGroupIsAnsweredInOneFlush) {
  Client client;
  client.Line("EHLO c");
  client.flushes.clear();
  const std::string out = client.Send(
      "MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
      "RCPT TO:<z@other.example>\r\nDATA\r\n");
  ASSERT_EQ(client.flushes.size(), 1u);
  EXPECT_EQ(Codes(out), "250 2.1.0 | 250 2.1.5 | 250 2.1.5 | 250 2.1.5 | 354");
}

TEST(PipeliningTest, MustBeLastCommandsEndAGroup) {
  Client client;
  client.flushes.clear();
  client.Send("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\n");
  ASSERT_EQ(client.flushes.size(), 2u);
  EXPECT_EQ(Codes(client.flushes[0]), "250");
  EXPECT_EQ(Codes(client.flushes[1]), "250 2.1.0 | 250 2.1.5");

  client.flushes.clear();
  client.Send("NOOP\r\nNOOP\r\nRSET\r\nRSET\r\nNOOP\r\n");
  ASSERT_EQ(client.flushes.size(), 3u);
  EXPECT_EQ(Codes(client.flushes[0]), "250 2.0.0");
  EXPECT_EQ(Codes(client.flushes[1]), "250 2.0.0");
  EXPECT_EQ(Codes(client.flushes[2]), "250 2.0.0 | 250 2.0.0 | 250 2.0.0");
}

// The session reads the output in place and consumes it (keeping the buffer): that ends a
// pipelined group exactly as TakeOutput does.
TEST(PipeliningTest, ConsumingTheOutputInPlaceEndsTheGroup) {
  Client client;
  client.Line("EHLO c");
  SessionMachine& m = client.m();
  ASSERT_EQ(m.Feed("NOOP\r\nNOOP\r\n", kNowMs), 12u);
  EXPECT_FALSE(m.CanContinue()) << "NOOP ends a group: the second waits for the first reply";
  EXPECT_EQ(Codes(m.output()), "250 2.0.0");
  m.ConsumeOutput();
  EXPECT_FALSE(m.HasOutput());
  EXPECT_TRUE(m.output().empty());
  ASSERT_TRUE(m.CanContinue());
  m.Continue(kNowMs);
  EXPECT_EQ(Codes(m.output()), "250 2.0.0");
  m.ConsumeOutput();
  EXPECT_FALSE(m.CanContinue());
}

TEST(PipeliningTest, DataReplyLeavesBeforeTheBodyIsRead) {
  Client client;
  client.Envelope();
  client.flushes.clear();
  client.Send("DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\nNOOP\r\n");
  // "." is not a group end: the reply to the pipelined QUIT travels with the 250.
  ASSERT_EQ(client.flushes.size(), 2u);
  EXPECT_EQ(Codes(client.flushes[0]), "354");
  EXPECT_EQ(Codes(client.flushes[1]), "250 2.0.0 | 221 2.0.0");  // NOOP after QUIT: unread
  EXPECT_TRUE(client.m().closed());
  EXPECT_EQ(client.closes, 1);
  EXPECT_EQ(client.m().buffered_input_bytes(), 0u);
}

TEST(PipeliningTest, EverySplitOfAWholeSessionGivesTheSameReplies) {
  const std::string session =
      "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n"
      "Subject: split\r\n\r\n..one\r\ntwo\r\n.\r\nMAIL FROM:<b@b.example>\r\n"
      "RCPT TO:<y@example.com>\r\nBDAT 4\r\nab\r\nBDAT 3 LAST\r\n.\r\nQUIT\r\n";
  std::string expected_output;
  std::vector<std::string> expected_bodies;
  {
    Client whole;
    expected_output = whole.Send(session);
    for (const auto& m : whole.commits) expected_bodies.push_back(m->body.ToString());
    ASSERT_EQ(expected_bodies.size(), 2u);
    EXPECT_EQ(expected_bodies[0], "Subject: split\r\n\r\n.one\r\ntwo\r\n");
    EXPECT_EQ(expected_bodies[1], "ab\r\n.\r\n");
    EXPECT_EQ(Codes(expected_output),
              "250 | 250 2.1.0 | 250 2.1.5 | 354 | 250 2.0.0 | 250 2.1.0 | 250 2.1.5 | "
              "250 2.0.0 | 250 2.0.0 | 221 2.0.0");
  }
  for (size_t i = 0; i <= session.size(); ++i) {
    Client client;
    std::string out = client.Send(session.substr(0, i));
    out += client.Send(session.substr(i));
    ASSERT_EQ(out, expected_output) << "split at " << i;
    ASSERT_EQ(client.commits.size(), 2u) << i;
    for (size_t k = 0; k < 2; ++k) {
      ASSERT_EQ(client.commits[k]->body.ToString(), expected_bodies[k]) << i;
    }
  }
  Client bytewise;
  std::string out;
  for (char c : session) out += bytewise.Send(std::string(1, c));
  EXPECT_EQ(out, expected_output);
}

// ---------------------------------------------------------------------------------------
// Transaction slots and commits: the machine pauses and buffers, bounded.

TEST(SlotTest, PipelinedCommandsWaitForTheSlot) {
  Client client;
  client.grant_slots = false;
  client.Line("EHLO c");
  client.flushes.clear();
  const std::string out =
      client.Send("MAIL FROM:<a@b.example>\r\nRCPT TO:<x@example.com>\r\nDATA\r\n");
  EXPECT_EQ(out, "");
  EXPECT_EQ(client.slots_waiting, 1);
  EXPECT_EQ(client.m().state(), State::kAwaitSlot);
  EXPECT_FALSE(client.m().WantsInput());
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kServer);
  EXPECT_GT(client.m().buffered_input_bytes(), 0u);
  const std::string granted = client.GrantSlot();
  EXPECT_EQ(Codes(granted), "250 2.1.0 | 250 2.1.5 | 354");
  EXPECT_EQ(client.flushes.size(), 1u);  // still one send for the group
  EXPECT_TRUE(client.m().holds_transaction_slot());
  client.Send("x\r\n.\r\n");
  EXPECT_FALSE(client.m().holds_transaction_slot());
  EXPECT_EQ(client.slots_held, 0);
}

TEST(SlotTest, FeedTakesOnlyWhatFitsWhilePausedAndTheRestIsFedAgain) {
  SessionLimits limits = DefaultLimits();
  limits.pending_input_bytes_max = 30;
  Client client(limits);
  client.grant_slots = false;
  client.Line("EHLO c");
  const std::string mail = "MAIL FROM:<a@b.example>\r\n";
  const std::string rest = "RCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\nDATA\r\n";
  const size_t used = client.m().Feed(mail + rest, kNowMs);
  EXPECT_EQ(used, mail.size() + 30);  // the MAIL line, then 30 bytes kept while paused
  client.Drain();
  EXPECT_FALSE(client.m().WantsInput());
  std::string out = client.GrantSlot();
  EXPECT_TRUE(client.m().WantsInput());
  out += client.Send(rest.substr(30));  // the I/O layer re-offers what was not taken
  EXPECT_EQ(Codes(out), "250 2.1.0 | 250 2.1.5 | 250 2.1.5 | 354");
}

TEST(SlotTest, ClosingWhileWaitingCancelsTheRequest) {
  Client client;
  client.grant_slots = false;
  client.Line("EHLO c");
  client.Line("MAIL FROM:<a@b.example>");
  EXPECT_EQ(client.slots_waiting, 1);
  EXPECT_EQ(Codes(client.Timeout()), "421 4.4.2");
  EXPECT_EQ(client.slots_waiting, 0);  // the request was given back
  client.m().SlotGranted();            // a late grant is handed straight back
  std::optional<Action> a = client.m().TakeAction();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->kind, Action::Kind::kReleaseTransactionSlot);
}

TEST(CommitTest, PipelinedQuitWaitsForTheCommit) {
  Client client;
  client.commit_sync = false;
  client.Envelope();
  client.Line("DATA");
  EXPECT_EQ(client.Send("hello\r\n.\r\nQUIT\r\n"), "");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_EQ(client.m().state(), State::kCommitting);
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kServer);
  EXPECT_FALSE(client.m().WantsInput());
  EXPECT_EQ(client.m().buffered_input_bytes(), 6u);
  const std::string out = client.FinishCommit(absl::OkStatus());
  EXPECT_EQ(out, "250 2.0.0 Ok: queued as " + client.commits[0]->id.ToHex() +
                     "\r\n221 2.0.0 Bye\r\n");
  EXPECT_TRUE(client.m().closed());
}

TEST(CommitTest, SpoolErrorsBecomeTheMappedReply) {
  struct Row {
    absl::Status status;
    const char* codes;
  };
  const Row rows[] = {
      {absl::ResourceExhaustedError("disk full"), "452 4.3.1"},
      {absl::UnavailableError("busy"), "451 4.3.0"},
      {absl::InvalidArgumentError("bad"), "554 5.6.0"},
  };
  for (const Row& row : rows) {
    Client client;
    client.commit_sync = false;
    client.Envelope();
    client.Line("DATA");
    client.Send("x\r\n.\r\n");
    EXPECT_EQ(Codes(client.FinishCommit(row.status)), row.codes);
    EXPECT_EQ(client.slots_held, 0);
    EXPECT_EQ(Codes(client.Line("MAIL FROM:<a@b.example>")), "250 2.1.0");  // can retry
  }
}

TEST(CommitTest, PendingInputIsBounded) {
  SessionLimits limits = DefaultLimits();
  limits.pending_input_bytes_max = 100;
  Client client(limits);
  client.commit_sync = false;
  client.Envelope();
  client.Line("DATA");
  client.Send("x\r\n.\r\n");
  const std::string flood(1000, 'n');
  EXPECT_EQ(client.m().Feed(flood, kNowMs), 100u);
  EXPECT_EQ(client.m().Feed(flood, kNowMs), 0u);
  EXPECT_EQ(client.m().buffered_input_bytes(), 100u);
}

// ---------------------------------------------------------------------------------------
// DATA content rules

TEST(DataTest, SmugglingSequencesDoNotEndDataAndAreRejected) {
  const char* sequences[] = {"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n"};
  for (const char* sequence : sequences) {
    Client client;
    client.Envelope();
    client.Line("DATA");
    const std::string smuggled =
        std::string("hello") + sequence +
        "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
        "smuggled\r\n.\r\n";
    EXPECT_EQ(Codes(client.Send(smuggled)), "554 5.6.0") << "one reply, nothing smuggled";
    EXPECT_TRUE(client.commits.empty());
    EXPECT_EQ(client.m().state(), State::kReady);
  }
}

TEST(DataTest, NormalizeModeStoresBareLfAsCrlf) {
  PolicyOptions policy = DefaultPolicy();
  policy.bare_lf = BareLineEndings::kNormalize;
  Client client(DefaultLimits(), policy);
  client.Envelope();
  client.Line("DATA");
  EXPECT_EQ(Codes(client.Send("a\nb\n.\nMAIL FROM:<e@x>\r\n.\r\n")), "250 2.0.0");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_EQ(client.commits[0]->body.ToString(), "a\r\nb\r\n.\r\nMAIL FROM:<e@x>\r\n");
}

TEST(DataTest, NulIsRejected) {
  Client client;
  client.Envelope();
  client.Line("DATA");
  EXPECT_EQ(Codes(client.Send(std::string("a\0b\r\n.\r\n", 8))), "554 5.6.0");
  EXPECT_TRUE(client.commits.empty());
}

TEST(DataTest, HundredMegabytesWithoutNewlineIsCutOffWithMemoryFlat) {
  Client client;
  client.Line("EHLO c");
  const std::string slice(64 * 1024, 'A');
  std::string out;
  size_t max_buffered = 0;
  size_t fed = 0;
  for (; fed < 100u * 1024 * 1024; fed += slice.size()) {
    EXPECT_EQ(client.m().Feed(slice, kNowMs), slice.size());
    out += client.Drain();
    max_buffered = std::max(max_buffered, client.m().buffered_input_bytes());
  }
  EXPECT_LE(max_buffered, kCommandLineBytesMax);
  EXPECT_EQ(Codes(out), "421 4.7.0");
  EXPECT_TRUE(client.m().closed());
}

// ---------------------------------------------------------------------------------------
// BDAT (RFC 3030)

TEST(BdatTest, Chunks) {
  Client client;
  client.Envelope();
  EXPECT_EQ(client.Send("BDAT 5\r\nhello"), "250 2.0.0 Ok: 5 octets received\r\n");
  EXPECT_EQ(client.m().state(), State::kChunked);
  EXPECT_EQ(Codes(client.Send("BDAT 7\r\n, world")), "250 2.0.0");
  EXPECT_EQ(Codes(client.Send("BDAT 0 LAST\r\n")), "250 2.0.0");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_EQ(client.commits[0]->body.ToString(), "hello, world");
}

TEST(BdatTest, LastChunkInOnePacketAndDeadlines) {
  Client client;
  client.Envelope();
  client.Send("BDAT 10 last\r\nSubj");
  EXPECT_EQ(client.m().state(), State::kBdat);
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kDataBlock);
  EXPECT_EQ(Codes(client.Send("ect:\r\n")), "250 2.0.0");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_EQ(client.commits[0]->body.ToString(), "Subject:\r\n");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kMail);
}

TEST(BdatTest, OutOfSequenceChunkIsSwallowedNotExecuted) {
  Client client;
  client.Line("EHLO c");
  const std::string inner = "MAIL FROM:<e@x.example>\r\nRCPT TO:<v@example.com>\r\n";
  const std::string out =
      client.Send("BDAT " + std::to_string(inner.size()) + "\r\n" + inner + "NOOP\r\n");
  EXPECT_EQ(Codes(out), "503 5.5.1 | 250 2.0.0");
  EXPECT_EQ(client.m().state(), State::kReady);
  client.Line("MAIL FROM:<a@b.example>");
  EXPECT_EQ(Codes(client.Send("BDAT 2\r\nxy")), "503 5.5.1");  // no RCPT yet
  EXPECT_EQ(client.m().state(), State::kMail);
}

TEST(BdatTest, DataAndBdatDoNotMix) {
  Client client;
  client.Envelope();
  EXPECT_EQ(Codes(client.Send("BDAT 3\r\nabc")), "250 2.0.0");
  EXPECT_EQ(Codes(client.Line("DATA")), "503 5.5.1");
  EXPECT_EQ(Codes(client.Send("BDAT 0 LAST\r\n")), "250 2.0.0");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_EQ(client.commits[0]->body.ToString(), "abc");
  // BDAT after a DATA transaction: there is no transaction any more.
  client.Line("MAIL FROM:<a@b.example>");
  client.Line("RCPT TO:<x@example.com>");
  client.Line("DATA");
  client.Send("x\r\n.\r\n");
  EXPECT_EQ(Codes(client.Send("BDAT 3 LAST\r\nabc")), "503 5.5.1");
  EXPECT_EQ(client.commits.size(), 2u);
}

TEST(BdatTest, OversizedTransactionFailsAndPipelinedChunksAreRefused) {
  Client client;
  client.Envelope();
  const uint32_t errors_before = client.m().errors();
  const std::string out = client.Send("BDAT 6000\r\n" + std::string(6000, 'a') +
                                      "BDAT 6000\r\n" + std::string(6000, 'b') +
                                      "BDAT 10 LAST\r\n" + std::string(10, 'c') + "NOOP\r\n");
  EXPECT_EQ(Codes(out), "250 2.0.0 | 552 5.3.4 | 503 5.5.1 | 250 2.0.0");
  EXPECT_TRUE(client.commits.empty());
  EXPECT_EQ(client.m().errors(), errors_before + 1);  // the pipelined refusal is not counted
  EXPECT_EQ(client.m().state(), State::kReady);
}

TEST(BdatTest, MalformedChunkCommands) {
  Client client;
  client.Envelope();
  EXPECT_EQ(Codes(client.Send("BDAT 3 FIRST\r\nabc")), "501 5.5.4");  // size known: swallowed
  EXPECT_EQ(client.m().state(), State::kRcpt);
  EXPECT_EQ(Codes(client.Send("BDAT x\r\nMAIL FROM:<e@x>\r\n")), "421 4.7.0");
  EXPECT_TRUE(client.m().closed());
}

TEST(BdatTest, BareLfInChunkIsRejected) {
  Client client;
  client.Envelope();
  EXPECT_EQ(Codes(client.Send("BDAT 4 LAST\r\na\nb\n")), "554 5.6.0");
  EXPECT_TRUE(client.commits.empty());
}

// ---------------------------------------------------------------------------------------
// Limits on errors and junk

TEST(LimitTest, MaxErrorsCloses) {
  SessionLimits limits = DefaultLimits();
  limits.max_errors = 3;
  Client client(limits);
  EXPECT_EQ(Codes(client.Send("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")),
            "500 5.5.2 | 500 5.5.2 | 500 5.5.2 | 421 4.7.0");
  EXPECT_TRUE(client.m().closed());
  EXPECT_EQ(client.closes, 1);
  EXPECT_EQ(client.Send("NOOP\r\n"), "");
}

TEST(LimitTest, TooManyRecipientsIsNotAnError) {
  SessionLimits limits = DefaultLimits();
  limits.max_errors = 2;
  limits.max_recipients = 1;
  Client client(limits);
  client.Envelope();
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Codes(client.Line("RCPT TO:<y@example.com>")), "452 4.5.3");
  }
  EXPECT_FALSE(client.m().closed());
}

TEST(LimitTest, JunkCommandsBeyondTheLimitCountAsErrors) {
  SessionLimits limits = DefaultLimits();
  limits.max_junk_commands = 2;
  limits.max_errors = 2;
  Client client(limits);
  EXPECT_EQ(Codes(client.Line("NOOP")), "250 2.0.0");
  EXPECT_EQ(Codes(client.Line("NOOP")), "250 2.0.0");
  EXPECT_EQ(Codes(client.Line("NOOP")), "250 2.0.0");
  EXPECT_EQ(Codes(client.Line("RSET")), "250 2.0.0 | 421 4.7.0");
  EXPECT_TRUE(client.m().closed());
}

// ---------------------------------------------------------------------------------------
// Shutdown and timeout

TEST(ShutdownTest, IdleSessionIsClosedAtOnce) {
  Client client;
  client.Line("EHLO c");
  EXPECT_EQ(client.Shutdown(),
            "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n");
  EXPECT_TRUE(client.m().closed());
  EXPECT_EQ(client.closes, 1);
}

TEST(ShutdownTest, EnvelopeInProgressIsDropped) {
  Client client;
  client.Envelope();
  EXPECT_EQ(Codes(client.Shutdown()), "421 4.3.2");
  EXPECT_EQ(client.slots_held, 0);
}

TEST(ShutdownTest, DataInProgressFinishesFirst) {
  Client client;
  client.Envelope();
  client.Line("DATA");
  client.Send("part one\r\n");
  EXPECT_EQ(client.Shutdown(), "");
  EXPECT_FALSE(client.m().closed());
  EXPECT_EQ(Codes(client.Send("part two\r\n.\r\nMAIL FROM:<a@b.example>\r\n")),
            "250 2.0.0 | 421 4.3.2");
  EXPECT_EQ(client.commits.size(), 1u);
  EXPECT_TRUE(client.m().closed());
}

TEST(ShutdownTest, CommitInFlightFinishesFirst) {
  Client client;
  client.commit_sync = false;
  client.Envelope();
  client.Line("DATA");
  client.Send("x\r\n.\r\n");
  EXPECT_EQ(client.Shutdown(), "");
  EXPECT_EQ(Codes(client.FinishCommit(absl::OkStatus())), "250 2.0.0 | 421 4.3.2");
  EXPECT_TRUE(client.m().closed());
}

TEST(ShutdownTest, ChunkedTransactionFinishesFirst) {
  Client client;
  client.Envelope();
  client.Send("BDAT 3\r\nabc");
  EXPECT_EQ(client.Shutdown(), "");
  EXPECT_EQ(Codes(client.Send("BDAT 2 LAST\r\nde")), "250 2.0.0 | 421 4.3.2");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_EQ(client.commits[0]->body.ToString(), "abcde");
}

TEST(ShutdownTest, BeforeStartRefusesTheConnection) {
  Policy policy = Policy::Create(DefaultPolicy()).value();
  core::MessageIdGenerator ids(1, 2);
  SessionMachine machine(DefaultLimits(), policy, ids);
  machine.Shutdown();
  machine.Start("127.0.0.1", 1, "mx.test");
  EXPECT_EQ(Codes(machine.TakeOutput()), "421 4.3.2");
  EXPECT_TRUE(machine.closed());
}

TEST(TimeoutTest, TimeoutClosesAndDropsTheTransaction) {
  Client client;
  client.Envelope();
  client.Line("DATA");
  client.Send("partial");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kDataBlock);
  EXPECT_EQ(client.Timeout(), "421 4.4.2 mx.test Error: timeout exceeded\r\n");
  EXPECT_TRUE(client.m().closed());
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kNone);
  EXPECT_TRUE(client.commits.empty());
  EXPECT_EQ(client.slots_held, 0);
}

// ---------------------------------------------------------------------------------------
// STARTTLS hook

TEST(StartTlsTest, PlaintextPipelinedAfterStartTlsIsDropped) {
  PolicyOptions policy = DefaultPolicy();
  policy.starttls_offered = true;
  Client client(DefaultLimits(), policy);
  EXPECT_NE(client.Line("EHLO c").find("250-STARTTLS\r\n"), std::string::npos);
  EXPECT_EQ(Codes(client.Send("STARTTLS\r\nMAIL FROM:<evil@x.example>\r\n")), "220 2.0.0");
  EXPECT_EQ(client.starttls, 1);
  EXPECT_EQ(client.m().state(), State::kStartTls);
  EXPECT_EQ(client.m().buffered_input_bytes(), 0u);
  EXPECT_EQ(client.TlsDone(), "");
  EXPECT_EQ(client.m().state(), State::kGreeting);
  EXPECT_EQ(Codes(client.Line("MAIL FROM:<a@b.example>")), "503 5.5.1");  // EHLO again
  EXPECT_EQ(client.Line("EHLO c").find("STARTTLS"), std::string::npos);
  client.Line("MAIL FROM:<a@b.example>");
  client.Line("RCPT TO:<x@example.com>");
  client.Line("DATA");
  client.Send("x\r\n.\r\n");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_NE(client.commits[0]->received_header.find(" with ESMTPS id "), std::string::npos);
  EXPECT_EQ(client.Line("STARTTLS"), "503 5.5.1 Error: TLS already active\r\n");  // not twice
}

TEST(StartTlsTest, ReceivedHeaderNamesVersionAndCipher) {
  PolicyOptions policy = DefaultPolicy();
  policy.starttls_offered = true;
  Client client(DefaultLimits(), policy);
  client.Line("EHLO c");
  EXPECT_EQ(Codes(client.Line("STARTTLS")), "220 2.0.0");
  client.m().TlsEstablished("TLS1.3 TLS_AES_256_GCM_SHA384");
  client.Drain();
  client.Envelope();
  client.Line("DATA");
  client.Send("x\r\n.\r\n");
  ASSERT_EQ(client.commits.size(), 1u);
  EXPECT_NE(client.commits[0]->received_header.find(
                " with ESMTPS (TLS1.3 TLS_AES_256_GCM_SHA384) id "),
            std::string::npos)
      << client.commits[0]->received_header;
}

TEST(StartTlsTest, ImplicitTlsNeitherOffersNorAcceptsStartTls) {
  PolicyOptions options = DefaultPolicy();
  options.starttls_offered = true;
  Policy policy = Policy::Create(options).value();
  core::MessageIdGenerator ids(1, 2);
  SessionMachine machine(DefaultLimits(), policy, ids);
  machine.SetImplicitTls("TLS1.2 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
  machine.Start("127.0.0.1", 465, "mx.test");
  EXPECT_EQ(machine.TakeOutput().substr(0, 4), "220 ");
  machine.Feed("EHLO c\r\n", kNowMs);
  EXPECT_EQ(machine.TakeOutput().find("STARTTLS"), std::string::npos);
  machine.Feed("STARTTLS\r\n", kNowMs);
  EXPECT_EQ(machine.TakeOutput().substr(0, 4), "503 ");  // TLS already active
  EXPECT_FALSE(machine.TakeAction().has_value());
}

TEST(StartTlsTest, RequiredTlsRefusesMailCommands) {
  PolicyOptions policy = DefaultPolicy();
  policy.starttls_offered = true;
  policy.require_tls = true;
  Client client(DefaultLimits(), policy);
  EXPECT_EQ(Codes(client.Line("EHLO c")), "250");
  EXPECT_EQ(Codes(client.Line("MAIL FROM:<a@b.example>")), "530 5.7.0");
  EXPECT_EQ(Codes(client.Send("BDAT 3\r\nabcNOOP\r\n")), "530 5.7.0 | 250 2.0.0");
  EXPECT_EQ(Codes(client.Line("STARTTLS")), "220 2.0.0");
}

// ---------------------------------------------------------------------------------------
// Observers

// Each wait of RFC 5321 §4.5.3.2 has its own timer: HELO/EHLO (command), MAIL, RCPT or
// DATA (rcpt), the first body byte after 354 (data init), then each body block.
TEST(SessionMachineTest, DeadlinesFollowTheState) {
  Client client;
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kCommand);
  client.Line("EHLO c");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kMail);
  client.Line("MAIL FROM:<a@b.example>");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kRcpt);
  client.Line("RCPT TO:<x@example.com>");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kRcpt);
  client.Line("DATA");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kDataInit);
  client.Send("Sub");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kDataBlock);
  client.Send("ject: x\r\n\r\nbody\r\n.\r\n");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kMail);
  client.Line("MAIL FROM:<a@b.example>");
  client.Line("RCPT TO:<x@example.com>");
  client.Line("DATA");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kDataInit);  // again for the next message
  client.Send(".\r\nQUIT\r\n");
  EXPECT_EQ(client.m().deadline(), DeadlineKind::kNone);
}

TEST(SessionMachineTest, MailCommandsPerConnectionAreLimited) {
  SessionLimits limits = DefaultLimits();
  limits.max_messages_per_connection = 2;
  Client client(limits);
  client.Line("EHLO c");
  EXPECT_EQ(Codes(client.Line("MAIL FROM:<a@b.example>")), "250 2.1.0");
  client.Line("RSET");  // an abandoned transaction counts: it was a MAIL command
  EXPECT_EQ(Codes(client.Line("MAIL FROM:<a@b.example>")), "250 2.1.0");
  client.Line("RCPT TO:<x@example.com>");
  client.Line("DATA");
  EXPECT_EQ(Codes(client.Send("Subject: x\r\n\r\nbody\r\n.\r\n")), "250 2.0.0");
  EXPECT_EQ(Codes(client.Line("MAIL FROM:<a@b.example>")), "421 4.7.0");
  EXPECT_TRUE(client.m().closed());
}

// Recipients refused past max_recipients are free up to the overshoot limit, then each is
// an error: a client that ignores 452 is closed in the end.
TEST(SessionMachineTest, RecipientsPastTheOvershootLimitAreErrors) {
  SessionLimits limits = DefaultLimits();
  limits.max_recipients = 1;
  limits.recipient_overshoot = 3;
  limits.max_errors = 2;
  Client client(limits);
  client.Envelope();
  for (int i = 0; i < 4; ++i) {  // three free, the fourth is the first error
    EXPECT_EQ(Codes(client.Line("RCPT TO:<y@example.com>")), "452 4.5.3") << i;
  }
  EXPECT_EQ(client.m().errors(), 1u);
  EXPECT_EQ(Codes(client.Line("RCPT TO:<y@example.com>")), "452 4.5.3 | 421 4.7.0");
  EXPECT_TRUE(client.m().closed());
}

// The overshoot is per transaction: a client that resends the rest in a new one is fine.
TEST(SessionMachineTest, OvershootStartsAgainWithEachTransaction) {
  SessionLimits limits = DefaultLimits();
  limits.max_recipients = 1;
  limits.recipient_overshoot = 1;
  Client client(limits);
  for (int t = 0; t < 3; ++t) {
    if (t == 0) client.Line("EHLO c");
    client.Line("MAIL FROM:<a@b.example>");
    client.Line("RCPT TO:<x@example.com>");
    EXPECT_EQ(Codes(client.Line("RCPT TO:<y@example.com>")), "452 4.5.3");
    client.Line("RSET");
  }
  EXPECT_EQ(client.m().errors(), 0u);
}

// An empty chunk that does not end the message is junk, like NOOP.
TEST(BdatTest, EmptyChunksAreJunkCommands) {
  SessionLimits limits = DefaultLimits();
  limits.max_junk_commands = 3;
  limits.max_errors = 2;
  Client client(limits);
  client.Envelope();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(Codes(client.Line("BDAT 0")), "250 2.0.0") << i;
  EXPECT_EQ(client.m().errors(), 1u);
  EXPECT_EQ(Codes(client.Line("BDAT 0")), "250 2.0.0 | 421 4.7.0");
  EXPECT_TRUE(client.m().closed());
}

// RFC 5321 §6.3: a message already carrying more than max_hops Received: fields is in a
// mail loop and is refused (554 5.4.6), by DATA and by BDAT; the session goes on.
TEST(SessionMachineTest, TooManyReceivedFieldsIsAMailLoop) {
  SessionLimits limits = DefaultLimits();
  limits.max_message_size_bytes = 1 << 20;
  limits.max_hops = 20;
  Client client(limits);
  auto header = [](int n) {
    std::string h;
    for (int i = 0; i < n; ++i) h += "Received: from hop" + std::to_string(i) + "\r\n";
    return h + "Subject: x\r\n\r\nbody\r\n";
  };
  client.Envelope();
  client.Line("DATA");
  EXPECT_EQ(Codes(client.Send(header(20) + ".\r\n")), "250 2.0.0");
  client.Line("MAIL FROM:<a@b.example>");
  client.Line("RCPT TO:<x@example.com>");
  client.Line("DATA");
  EXPECT_EQ(Codes(client.Send(header(21) + ".\r\n")), "554 5.4.6");
  client.Line("MAIL FROM:<a@b.example>");
  client.Line("RCPT TO:<x@example.com>");
  const std::string chunk = header(21);
  EXPECT_EQ(Codes(client.Send("BDAT " + std::to_string(chunk.size()) + " LAST\r\n" + chunk)),
            "554 5.4.6");
  EXPECT_EQ(client.commits.size(), 1u);
  EXPECT_EQ(client.refusals,
            (std::vector<ReplyId>{ReplyId::kTooManyHops, ReplyId::kTooManyHops}));
  EXPECT_EQ(client.m().errors(), 0u);
  EXPECT_FALSE(client.m().closed());
}

TEST(SessionMachineTest, ConfiguredBannerIsTheGreeting) {
  Policy policy = Policy::Create(DefaultPolicy()).value();
  core::MessageIdGenerator ids(1, 2);
  SessionMachine machine(DefaultLimits(), policy, ids);
  machine.SetBanner("mx.test Welcome, 2 weeks of mail");
  machine.Start("127.0.0.1", 1, "mx.test");
  EXPECT_EQ(machine.TakeOutput(), "220 mx.test Welcome, 2 weeks of mail\r\n");
}

TEST(SessionMachineTest, TransitionsAreTraced) {
  Policy policy = Policy::Create(DefaultPolicy()).value();
  core::MessageIdGenerator ids(1, 2);
  SessionMachine machine(DefaultLimits(), policy, ids);
  std::vector<std::string> trace;
  machine.set_trace_hook(
      [](void* context, State from, State to) {
        static_cast<std::vector<std::string>*>(context)->push_back(
            std::string(StateName(from)) + "->" + StateName(to));
      },
      &trace);
  machine.Start("127.0.0.1", 1, "h");
  machine.Feed("EHLO c\r\n", kNowMs);
  machine.TakeOutput();
  machine.Feed("MAIL FROM:<a@b.example>\r\n", kNowMs);
  machine.SlotGranted();
  machine.Feed("QUIT\r\n", kNowMs);
  EXPECT_EQ(trace, (std::vector<std::string>{"init->greeting", "greeting->ready",
                                             "ready->await-slot", "await-slot->mail",
                                             "mail->quit"}));
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
