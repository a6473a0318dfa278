// The reply table and the one Status → SMTP mapping (STYLE.md principle 11).
#include "listeners/esmtp/replies.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace ringmail::listeners::esmtp {
namespace {

TEST(RepliesTest, EveryReplyIsWellFormed) {
  for (int i = 0; i < static_cast<int>(ReplyId::kCount); ++i) {
    const ReplyId id = static_cast<ReplyId>(i);
    const ReplySpec& spec = GetReply(id);
    std::string out;
    if (spec.text.find("{}") != std::string_view::npos) {
      AppendReply(id, "arg", &out);
      EXPECT_NE(out.find("arg"), std::string::npos);
    } else {
      AppendReply(id, &out);
    }
    ASSERT_GE(out.size(), 6u) << i;
    EXPECT_EQ(out.substr(out.size() - 2), "\r\n") << i;
    EXPECT_EQ(out.find('\r'), out.size() - 2) << "one line only: " << i;
    EXPECT_EQ(std::stoi(out.substr(0, 3)), spec.code) << i;
    EXPECT_EQ(out[3], ' ') << i;
    if (!spec.enhanced.empty()) {
      EXPECT_EQ(out.substr(4, spec.enhanced.size()), spec.enhanced) << i;
    }
  }
}

struct Expected {
  ReplyId id;
  const char* line;
};

TEST(RepliesTest, IssueCodesAreExact) {
  const Expected table[] = {
      {ReplyId::kLineTooLong, "500 5.5.6 "},
      {ReplyId::kBadSequence, "503 5.5.1 "},
      {ReplyId::kTlsActive, "503 5.5.1 "},
      {ReplyId::kNeedMail, "503 5.5.1 "},
      {ReplyId::kMailSyntax, "501 5.5.4 "},
      {ReplyId::kUnknownCommand, "500 5.5.2 "},
      {ReplyId::kVrfy, "252 2.0.0 "},
      {ReplyId::kBareLf, "554 5.6.0 "},
      {ReplyId::kNulByte, "554 5.6.0 "},
      {ReplyId::kMessageTooBig, "552 5.3.4 "},
      {ReplyId::kTooManyRecipients, "452 4.5.3 "},
      {ReplyId::kRelayDenied, "550 5.7.1 Relaying denied\r\n"},
      {ReplyId::kUnknownMailParameter, "555 5.5.4 "},
      {ReplyId::kUnknownRcptParameter, "555 5.5.4 "},
      {ReplyId::kStorageFull, "452 4.3.1 "},
      {ReplyId::kOk, "250 2.0.0 Ok\r\n"},
      {ReplyId::kStartData, "354 End data with <CR><LF>.<CR><LF>\r\n"},
      {ReplyId::kBye, "221 2.0.0 Bye\r\n"},
      {ReplyId::kNonAsciiAddress, "553 5.6.7 "},
      {ReplyId::kNotImplemented, "502 5.5.1 "},
  };
  for (const Expected& e : table) {
    std::string out;
    AppendReply(e.id, &out);
    EXPECT_EQ(out.substr(0, std::string(e.line).size()), e.line);
  }
  std::string out;
  AppendReply(ReplyId::kGreeting, "mx.example", &out);
  AppendReply(ReplyId::kQueued, "00ff", &out);
  AppendReply(ReplyId::kTimeout, "mx.example", &out);
  AppendReply(ReplyId::kShutdown, "mx.example", &out);
  AppendReply(ReplyId::kTooManyErrors, "mx.example", &out);
  EXPECT_EQ(out,
            "220 mx.example ESMTP ringmail\r\n"
            "250 2.0.0 Ok: queued as 00ff\r\n"
            "421 4.4.2 mx.example Error: timeout exceeded\r\n"
            "421 4.3.2 mx.example Service shutting down, closing transmission channel\r\n"
            "421 4.7.0 mx.example Error: too many errors\r\n");
}

TEST(RepliesTest, EhloAdvertisesTheExtensions) {
  std::string out;
  AppendEhloReply("mx.example", {.size_bytes_max = 1000, .starttls = false}, &out);
  EXPECT_EQ(out,
            "250-mx.example\r\n"
            "250-PIPELINING\r\n"
            "250-SIZE 1000\r\n"
            "250-8BITMIME\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250-CHUNKING\r\n"
            "250-BINARYMIME\r\n"
            "250 SMTPUTF8\r\n");
  out.clear();
  AppendEhloReply("h", {.size_bytes_max = 0, .starttls = true}, &out);
  EXPECT_NE(out.find("250-SIZE 0\r\n"), std::string::npos);
  EXPECT_NE(out.find("250-STARTTLS\r\n"), std::string::npos);
}

TEST(RepliesTest, StatusMappingTable) {
  struct Row {
    absl::StatusCode code;
    const char* reply;
  };
  const Row table[] = {
      {absl::StatusCode::kOk, "250 2.0.0"},
      {absl::StatusCode::kResourceExhausted, "452 4.3.1"},  // spool full
      {absl::StatusCode::kUnavailable, "451 4.3.0"},
      {absl::StatusCode::kDeadlineExceeded, "451 4.3.0"},
      {absl::StatusCode::kAborted, "451 4.3.0"},
      {absl::StatusCode::kCancelled, "451 4.3.0"},
      {absl::StatusCode::kInternal, "451 4.3.0"},
      {absl::StatusCode::kDataLoss, "451 4.3.0"},
      {absl::StatusCode::kUnknown, "451 4.3.0"},
      {absl::StatusCode::kNotFound, "451 4.3.0"},
      {absl::StatusCode::kAlreadyExists, "451 4.3.0"},
      {absl::StatusCode::kUnimplemented, "451 4.3.0"},
      {absl::StatusCode::kInvalidArgument, "554 5.6.0"},
      {absl::StatusCode::kFailedPrecondition, "554 5.3.0"},
      {absl::StatusCode::kPermissionDenied, "554 5.7.1"},
      {absl::StatusCode::kUnauthenticated, "554 5.7.1"},
      {absl::StatusCode::kOutOfRange, "552 5.3.4"},
  };
  for (const Row& row : table) {
    const ReplyId id = ReplyForCommitStatus(absl::Status(row.code, "detail never shown"));
    std::string out;
    if (id == ReplyId::kQueued) {
      AppendReply(id, "x", &out);
    } else {
      AppendReply(id, &out);
    }
    EXPECT_EQ(out.substr(0, 9), row.reply) << absl::StatusCodeToString(row.code);
    EXPECT_EQ(out.find("detail"), std::string::npos);
    const int klass = out[0] - '0';
    if (row.code == absl::StatusCode::kUnavailable ||
        row.code == absl::StatusCode::kResourceExhausted) {
      EXPECT_EQ(klass, 4);
    }
    if (row.code == absl::StatusCode::kInvalidArgument ||
        row.code == absl::StatusCode::kFailedPrecondition ||
        row.code == absl::StatusCode::kPermissionDenied) {
      EXPECT_EQ(klass, 5);
    }
  }
}

}  // namespace
}  // namespace ringmail::listeners::esmtp
