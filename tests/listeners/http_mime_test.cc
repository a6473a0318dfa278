// Tests of listeners/http/mime: the encoders (quoted-printable, base64 lines, RFC 2047
// words, folding), address lists, and whole messages built from structured content —
// their structure, line lengths, CRLF discipline, and refusal of header injection.
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "listeners/http/mime.h"

namespace ringmail::listeners::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// Lines split at CRLF; fails the test on a bare CR or LF.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\r\n", pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    EXPECT_EQ(line.find_first_of("\r\n"), std::string::npos) << "bare CR or LF in: " << line;
    out.push_back(line);
    pos = end + 2;
  }
  return out;
}

size_t LongestLine(const std::string& text) {
  size_t longest = 0;
  for (const std::string& l : Lines(text)) longest = std::max(longest, l.size());
  return longest;
}

// Minimal quoted-printable decoder (RFC 2045 §6.7) for round trips.
std::string DecodeQp(const std::string& qp) {
  std::string out;
  for (size_t i = 0; i < qp.size(); ++i) {
    if (qp[i] != '=') {
      out.push_back(qp[i]);
      continue;
    }
    if (qp.compare(i + 1, 2, "\r\n") == 0) {
      i += 2;
      continue;
    }
    out.push_back(static_cast<char>(std::stoi(qp.substr(i + 1, 2), nullptr, 16)));
    i += 2;
  }
  return out;
}

// The decoded text of a header made of encoded-words ("Name: =?UTF-8?B?..?= ...").
std::string DecodeWords(const std::string& header) {
  std::string out;
  size_t pos = 0;
  while ((pos = header.find("=?UTF-8?B?", pos)) != std::string::npos) {
    size_t end = header.find("?=", pos + 10);
    std::string bytes;
    EXPECT_TRUE(absl::Base64Unescape(header.substr(pos + 10, end - pos - 10), &bytes));
    out += bytes;
    pos = end + 2;
  }
  return out;
}

TEST(HttpMimeTest, QuotedPrintableRoundTripsAndKeepsLinesShort) {
  const std::vector<std::string> texts = {
      "plain ascii",
      "a=b",
      "caf\xC3\xA9 cr\xC3\xA8me",
      "trailing space \nnext\t\n",
      std::string(500, 'x'),
      std::string(300, '=') + "\n" + std::string(100, ' ') + "end",
      "mixed\r\nendings\rhere\n"};
  for (const std::string& t : texts) {
    const std::string qp = EncodeQuotedPrintable(t);
    EXPECT_LE(LongestLine(qp), 76u) << t;
    std::string expected;  // any line ending becomes CRLF
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] == '\r' && i + 1 < t.size() && t[i + 1] == '\n') continue;
      if (t[i] == '\r' || t[i] == '\n') {
        expected += "\r\n";
      } else {
        expected += t[i];
      }
    }
    EXPECT_EQ(DecodeQp(qp), expected);
    for (const std::string& line : Lines(qp)) {
      if (!line.empty()) {
        EXPECT_NE(line.back(), ' ') << "trailing space must be encoded";
        EXPECT_NE(line.back(), '\t');
      }
      for (char c : line) EXPECT_LT(static_cast<unsigned char>(c), 128u);
    }
  }
  EXPECT_EQ(EncodeQuotedPrintable("a=b"), "a=3Db");
  EXPECT_EQ(EncodeQuotedPrintable("\xC3\xA9"), "=C3=A9");
  EXPECT_EQ(EncodeQuotedPrintable("x \n"), "x=20\r\n");
}

TEST(HttpMimeTest, Base64LinesAre76Columns) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>(i * 7));
  const std::string b64 = EncodeBase64Lines(data);
  std::vector<std::string> lines = Lines(b64);
  for (size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_EQ(lines[i].size(), 76u);
  std::string joined = absl::StrReplaceAll(b64, {{"\r\n", ""}});
  std::string back;
  ASSERT_TRUE(absl::Base64Unescape(joined, &back));
  EXPECT_EQ(back, data);
  EXPECT_EQ(EncodeBase64Lines(""), "");
}

TEST(HttpMimeTest, FoldUnstructuredFoldsAsciiAtSpaces) {
  EXPECT_EQ(FoldUnstructured("Subject", "hello"), "Subject: hello\r\n");
  std::string words;
  for (int i = 0; i < 60; ++i) words += "word" + std::to_string(i) + " ";
  const std::string h = FoldUnstructured("Subject", words);
  EXPECT_LE(LongestLine(h), 78u);
  EXPECT_EQ(absl::StrReplaceAll(h, {{"\r\n", ""}}), "Subject: " + words);  // unfolds back
}

TEST(HttpMimeTest, FoldUnstructuredEncodesNonAsciiAsWholeCharacters) {
  std::string value;
  for (int i = 0; i < 40; ++i) value += "\xE6\x97\xA5\xE6\x9C\xAC ";  // "日本 "
  const std::string h = FoldUnstructured("Subject", value);
  EXPECT_THAT(h, StartsWith("Subject: =?UTF-8?B?"));
  EXPECT_LE(LongestLine(h), 76u);
  EXPECT_EQ(DecodeWords(h), value);
  // Every word decodes to whole UTF-8 characters on its own.
  size_t pos = 0;
  while ((pos = h.find("=?UTF-8?B?", pos)) != std::string::npos) {
    size_t end = h.find("?=", pos + 10);
    std::string bytes;
    ASSERT_TRUE(absl::Base64Unescape(h.substr(pos + 10, end - pos - 10), &bytes));
    EXPECT_NE(static_cast<unsigned char>(bytes[0]) & 0xC0, 0x80u) << "word starts mid-character";
    EXPECT_LE(end + 2 - pos, 75u);
    pos = end + 2;
  }
}

TEST(HttpMimeTest, FoldUnstructuredEncodesAnUnfoldableAsciiRun) {
  const std::string value(2000, 'a');
  const std::string h = FoldUnstructured("X-Long", value);
  EXPECT_LE(LongestLine(h), 76u);
  EXPECT_EQ(DecodeWords(h), value);
}

TEST(HttpMimeTest, AddressLists) {
  auto list = ParseAddressList(
      "a@x.test, Ann Smith <ann@x.test>, \"Last, First\" <lf@x.test>, undisclosed-recipients:;",
      "f");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 4u);
  EXPECT_EQ((*list)[0].address, "a@x.test");
  EXPECT_EQ((*list)[1].display, "Ann Smith");
  EXPECT_EQ((*list)[2].display, "Last, First");
  EXPECT_EQ((*list)[2].address, "lf@x.test");
  EXPECT_EQ((*list)[3].address, "");
  const std::string h = FormatAddressHeader("To", *list);
  EXPECT_THAT(h, HasSubstr("\"Last, First\" <lf@x.test>"));
  EXPECT_THAT(h, HasSubstr("Ann Smith <ann@x.test>"));
  auto utf8 = ParseAddressList("J\xC3\xBCrgen <j@x.test>", "f");
  ASSERT_TRUE(utf8.ok());
  EXPECT_THAT(FormatAddressHeader("From", *utf8), StartsWith("From: =?UTF-8?B?"));
  EXPECT_THAT(FormatAddressHeader("From", *utf8), HasSubstr("<j@x.test>"));
}

TEST(HttpMimeTest, AddressListsRefuseInjectionAndGarbage) {
  for (std::string bad : {"a@x.test\r\nBcc: evil@y.test", "a@x.test\nX: y", "", "a@x.test,,b@x",
                          "Ann <a@x.test", "no-at-sign", "a b@x.test", "Ann <a@x.test> tail"}) {
    auto r = ParseAddressList(bad, "content.headers.To");
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(ErrorField(r.status()), "content.headers.To") << bad;
  }
}

MimeContent Basic() {
  MimeContent c;
  c.from = "Sender <s@x.test>";
  c.subject = "Hello";
  c.text_body = "Hi there\n";
  return c;
}

MimeOptions Options() {
  MimeOptions o;
  o.to = "r@y.test";
  o.message_id = "<0123@mx.test>";
  o.date_ms = 1'700'000'000'000;
  o.boundary_seed = "0123";
  return o;
}

TEST(HttpMimeTest, TextOnlyMessage) {
  auto m = BuildMime(Basic(), {}, Options());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(*m, StartsWith("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
  EXPECT_THAT(*m, HasSubstr("\r\nFrom: Sender <s@x.test>\r\n"));
  EXPECT_THAT(*m, HasSubstr("\r\nTo: r@y.test\r\n"));
  EXPECT_THAT(*m, HasSubstr("\r\nSubject: Hello\r\n"));
  EXPECT_THAT(*m, HasSubstr("\r\nMessage-ID: <0123@mx.test>\r\n"));
  EXPECT_THAT(*m, HasSubstr("\r\nMIME-Version: 1.0\r\n"));
  EXPECT_THAT(*m, HasSubstr("Content-Type: text/plain; charset=utf-8\r\n"
                            "Content-Transfer-Encoding: quoted-printable\r\n\r\nHi there\r\n"));
  EXPECT_TRUE(absl::EndsWith(*m, "\r\n"));
  Lines(*m);
}

TEST(HttpMimeTest, TextAndHtmlIsAlternativeAndAttachmentsMakeMixed) {
  MimeContent c = Basic();
  c.html_body = "<p>Hi</p>";
  auto alt = BuildMime(c, {}, Options());
  ASSERT_TRUE(alt.ok());
  EXPECT_THAT(*alt,
              HasSubstr("Content-Type: multipart/alternative;\r\n boundary=\"=_rm_alt_0123\""));
  EXPECT_LT(alt->find("text/plain"), alt->find("text/html")) << "plain text first (RFC 2046)";
  EXPECT_THAT(*alt, HasSubstr("\r\n--=_rm_alt_0123--\r\n"));
  std::vector<Attachment> att = {{"r\xC3\xA9sum\xC3\xA9.pdf", "application/pdf", "%PDF-1.4..."},
                                 {"data.bin", "application/octet-stream", std::string(5000, '\1')}};
  auto mixed = BuildMime(c, att, Options());
  ASSERT_TRUE(mixed.ok());
  EXPECT_THAT(*mixed, HasSubstr("Content-Type: multipart/mixed;\r\n boundary=\"=_rm_mix_0123\""));
  EXPECT_THAT(*mixed, HasSubstr("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"));
  EXPECT_THAT(*mixed, HasSubstr("Content-Disposition: attachment;\r\n filename=\"data.bin\""));
  EXPECT_THAT(*mixed, HasSubstr("Content-Transfer-Encoding: base64"));
  EXPECT_LT(mixed->find("multipart/mixed"), mixed->find("multipart/alternative"));
  EXPECT_LE(LongestLine(*mixed), 78u);
  // Attachments only, no text.
  MimeContent bare = Basic();
  bare.text_body.reset();
  auto only = BuildMime(bare, att, Options());
  ASSERT_TRUE(only.ok());
  EXPECT_THAT(*only, Not(HasSubstr("text/plain")));
}

TEST(HttpMimeTest, LongAndNonAsciiContentStaysWithinLineLimits) {
  MimeContent c = Basic();
  c.subject = std::string(3000, 'S') + " \xE2\x82\xAC";
  c.text_body = std::string(5000, 'x') + "\n" + std::string(100, '\xC3') + "\n";
  c.headers = {{"X-Tag", std::string(1500, 't')}, {"Reply-To", "R\xC3\xA9my <r@x.test>"}};
  auto m = BuildMime(c, {}, Options());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_LE(LongestLine(*m), 78u);
  for (char ch : *m) EXPECT_LT(static_cast<unsigned char>(ch), 128u) << "all 7-bit";
}

TEST(HttpMimeTest, CustomDateAndMessageIdReplaceOurs) {
  MimeContent c = Basic();
  c.headers = {{"Message-ID", "<mine@x.test>"}, {"Date", "Mon, 1 Jan 2024 00:00:00 +0000"}};
  auto m = BuildMime(c, {}, Options());
  ASSERT_TRUE(m.ok());
  EXPECT_THAT(*m, HasSubstr("Message-ID: <mine@x.test>"));
  EXPECT_THAT(*m, Not(HasSubstr("<0123@mx.test>")));
  EXPECT_EQ(m->find("Date: Tue"), std::string::npos);
}

struct InjectionCase {
  const char* name;
  MimeContent content;
  std::vector<Attachment> attachments;
  std::string field;
};

TEST(HttpMimeTest, HeaderInjectionAndReservedHeadersAreRefusedNamingTheField) {
  std::vector<InjectionCase> cases;
  auto with = [](auto f) {
    MimeContent c = Basic();
    f(c);
    return c;
  };
  cases.push_back({"CRLF in subject",
                   with([](MimeContent& c) { c.subject = "a\r\nBcc: e@v"; }),
                   {},
                   "content.subject"});
  cases.push_back(
      {"LF in subject", with([](MimeContent& c) { c.subject = "a\nb"; }), {}, "content.subject"});
  cases.push_back(
      {"CR in from", with([](MimeContent& c) { c.from = "a@x\rb"; }), {}, "content.from"});
  cases.push_back({"CRLF in header value",
                   with([](MimeContent& c) {
                     c.headers = {{"X-A", "v\r\nBcc: e@v"}};
                   }),
                   {},
                   "content.headers.X-A"});
  cases.push_back({"colon in header name",
                   with([](MimeContent& c) {
                     c.headers = {{"X-A: b\r\nX", "v"}};
                   }),
                   {},
                   "content.headers.X-A: b\r\nX"});
  cases.push_back({"space in header name",
                   with([](MimeContent& c) {
                     c.headers = {{"X A", "v"}};
                   }),
                   {},
                   "content.headers.X A"});
  cases.push_back({"content-type header",
                   with([](MimeContent& c) {
                     c.headers = {{"Content-Type", "text/html"}};
                   }),
                   {},
                   "content.headers.Content-Type"});
  cases.push_back({"bcc header",
                   with([](MimeContent& c) {
                     c.headers = {{"Bcc", "a@b.c"}};
                   }),
                   {},
                   "content.headers.Bcc"});
  cases.push_back({"CRLF in To",
                   with([](MimeContent& c) {
                     c.headers = {{"To", "a@b\r\n"}};
                   }),
                   {},
                   "content.headers.To"});
  cases.push_back(
      {"attachment name", Basic(), {{"a\r\nb", "text/plain", "x"}}, "content.attachments[0].name"});
  cases.push_back({"attachment type",
                   Basic(),
                   {{"a", "text/plain\r\nX: y", "x"}},
                   "content.attachments[0].type"});
  cases.push_back({"no body", with([](MimeContent& c) { c.text_body.reset(); }), {}, "content"});
  for (const InjectionCase& c : cases) {
    auto m = BuildMime(c.content, c.attachments, Options());
    ASSERT_FALSE(m.ok()) << c.name;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(m.status().message()), StartsWith(c.field + ": ")) << c.name;
  }
}

TEST(HttpMimeTest, ErrorFieldOnlyWhenThePrefixIsAField) {
  EXPECT_EQ(ErrorField(FieldError("recipients[0].email", "bad")), "recipients[0].email");
  EXPECT_EQ(ErrorField(absl::InvalidArgumentError("not a field: x")), "");
  EXPECT_EQ(ErrorField(absl::InvalidArgumentError("plain")), "");
}

TEST(HttpMimeTest, Rfc5322Date) { EXPECT_EQ(Rfc5322Date(0), "Thu, 01 Jan 1970 00:00:00 +0000"); }

}  // namespace
}  // namespace ringmail::listeners::http
