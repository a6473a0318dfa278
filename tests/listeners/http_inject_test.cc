// Tests of the injection API's pure half: {{name}} templates, the JSON decoder (simdjson),
// the plan (address checks, relay policy, one message per recipient when templated, raw
// content normalisation, sizes) and the result JSON.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "listeners/http/inject_request.h"
#include "listeners/http/inject_budget.h"
#include "listeners/http/injection.h"
#include "listeners/http/mime.h"
#include "listeners/http/responses.h"
#include "listeners/http/template.h"

namespace ringmail::listeners::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---- templates ----

TEST(HttpTemplateTest, SubstitutesFromRecipientThenGlobal) {
  SubstitutionValues rcpt = {{"name", "Ann"}};
  SubstitutionValues global = {{"name", "friend"}, {"shop", "Acme"}};
  TemplateScope scope{&rcpt, &global};
  auto r = ExpandTemplate("Hi {{name}}, welcome to {{ shop }}!{{missing}}", scope,
                          TemplateEscape::kNone, 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "Hi Ann, welcome to Acme!");
  TemplateScope only_global{nullptr, &global};
  EXPECT_EQ(*ExpandTemplate("{{name}}", only_global, TemplateEscape::kNone, 100), "friend");
}

TEST(HttpTemplateTest, HtmlEscapesUnlessTripleBraces) {
  SubstitutionValues v = {{"x", "<b>&\"'"}};
  TemplateScope scope{&v, nullptr};
  EXPECT_EQ(*ExpandTemplate("{{x}}", scope, TemplateEscape::kHtml, 100),
            "&lt;b&gt;&amp;&quot;&#39;");
  EXPECT_EQ(*ExpandTemplate("{{{x}}}", scope, TemplateEscape::kHtml, 100), "<b>&\"'");
  EXPECT_EQ(*ExpandTemplate("{{x}}", scope, TemplateEscape::kNone, 100), "<b>&\"'");
}

TEST(HttpTemplateTest, MalformedReferencesStayLiteral) {
  SubstitutionValues v = {{"a", "A"}};
  TemplateScope scope{&v, nullptr};
  for (std::string t :
       std::vector<std::string>{"{{", "{{a", "{{ a }", "{{1a}}", "{{a b}}", "{{}}", "}}{{",
                                "{{" + std::string(kTemplateNameBytesMax + 1, 'a') + "}}"}) {
    EXPECT_EQ(*ExpandTemplate(t, scope, TemplateEscape::kNone, 1000), t) << t;
    EXPECT_FALSE(HasTemplateReference(t)) << t;
  }
  EXPECT_EQ(*ExpandTemplate("{{{{a}}", scope, TemplateEscape::kNone, 100), "{{A");
  EXPECT_TRUE(HasTemplateReference("x {{a}} y"));
}

TEST(HttpTemplateTest, OutputIsBounded) {
  SubstitutionValues v = {{"big", std::string(1000, 'b')}};
  TemplateScope scope{&v, nullptr};
  std::string t;
  for (int i = 0; i < 100; ++i) t += "{{big}}";
  auto r = ExpandTemplate(t, scope, TemplateEscape::kNone, 50'000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(ExpandTemplate(t, scope, TemplateEscape::kNone, 100'000).ok());
}

// ---- JSON decoding ----

absl::StatusOr<InjectRequest> Decode(std::string body, size_t recipients_max = 100) {
  InjectDecoder d(1 << 20);
  return d.Decode(body, DecodeLimits{recipients_max});
}

TEST(HttpInjectDecodeTest, StructuredRequest) {
  auto r = Decode(R"({
    "envelope_sender": "bounce@x.test",
    "recipients": [{"email": "a@y.test", "name": "Ann",
                    "substitution_data": {"n": "Ann", "k": 3, "b": true, "z": null}},
                   "b@y.test"],
    "substitution_data": {"shop": "Acme"},
    "content": {"from": {"email": "s@x.test", "name": "Shop"}, "subject": "Hi {{n}}",
                "text_body": "t", "html_body": "<p>h</p>",
                "headers": {"X-Campaign": "c1"},
                "attachments": [{"name": "a.txt", "type": "Text/Plain", "data": "aGVsbG8="}]}
  })");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->envelope_sender, "bounce@x.test");
  ASSERT_EQ(r->recipients.size(), 2u);
  EXPECT_EQ(r->recipients[0].name, "Ann");
  ASSERT_TRUE(r->recipients[0].substitution.has_value());
  EXPECT_EQ(r->recipients[0].substitution->at("k"), "3");
  EXPECT_EQ(r->recipients[0].substitution->at("b"), "true");
  EXPECT_EQ(r->recipients[0].substitution->at("z"), "");
  EXPECT_EQ(r->recipients[1].email, "b@y.test");
  EXPECT_TRUE(r->templated());
  EXPECT_FALSE(r->raw);
  EXPECT_EQ(r->structured.from, "\"Shop\" <s@x.test>");
  EXPECT_EQ(*r->structured.html_body, "<p>h</p>");
  ASSERT_EQ(r->structured.headers.size(), 1u);
  ASSERT_EQ(r->attachments.size(), 1u);
  EXPECT_EQ(r->attachments[0].data, "hello");
  EXPECT_EQ(r->attachments[0].type, "text/plain");
  EXPECT_EQ(r->global_substitution->at("shop"), "Acme");
}

TEST(HttpInjectDecodeTest, RawRequest) {
  auto r = Decode(R"({"envelope_sender": "", "recipients": [{"email": "a@y.test"}],
                      "content": "Subject: x\r\n\r\nbody\r\n"})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->raw);
  EXPECT_EQ(r->raw_content, "Subject: x\r\n\r\nbody\r\n");
  EXPECT_EQ(r->envelope_sender, "");
  EXPECT_FALSE(r->templated());
}

struct DecodeError {
  std::string body;
  std::string field;
};

TEST(HttpInjectDecodeTest, ErrorsNameTheField) {
  const std::string ok_rcpt = R"("recipients":[{"email":"a@y.test"}])";
  const std::string ok_content = R"("content":{"from":"s@x.test","text_body":"t"})";
  const std::vector<DecodeError> cases = {
      {"not json", "body"},
      {"[1,2]", "body"},
      {"{\"envelope_sender\":\"a@x\"," + ok_rcpt + "," + ok_content, "body"},  // truncated
      {"{" + ok_rcpt + "," + ok_content + "}", "envelope_sender"},
      {R"({"envelope_sender":"a@x",)" + ok_content + "}", "recipients"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt + "}", "content"},
      {R"({"envelope_sender":5,)" + ok_rcpt + "," + ok_content + "}", "envelope_sender"},
      {R"({"envelope_sender":"a@x","recipients":[],)" + ok_content + "}", "recipients"},
      {R"({"envelope_sender":"a@x","recipients":[{"name":"x"}],)" + ok_content + "}",
       "recipients[0].email"},
      {R"({"envelope_sender":"a@x","recipients":["a@y",{"email":"b@y","x":1}],)" + ok_content + "}",
       "recipients[1].x"},
      {R"({"envelope_sender":"a@x","recipients":[{"email":"b@y","substitution_data":{"o":{}}}],)" +
           ok_content + "}",
       "recipients[0].substitution_data.o"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt + R"(,"content":{"text_body":"t"}})",
       "content.from"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt + R"(,"content":{"from":"s@x"}})", "content"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt + R"(,"content":{"from":"s@x","txt":"t"}})",
       "content.txt"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt +
           R"(,"content":{"from":"s@x","text_body":"t","attachments":[{"data":"!!"}]}})",
       "content.attachments[0].data"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt +
           R"(,"content":{"from":"s@x","text_body":"t","headers":{"X":1}}})",
       "content.headers.X"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt + R"(,"content":42})", "content"},
      {R"({"envelope_sender":"a@x",)" + ok_rcpt + "," + ok_content + R"(,"extra":1})", "extra"},
      {"{\"envelope_sender\":\"a\xff@x\"," + ok_rcpt + "," + ok_content + "}", "body"},
  };
  for (const DecodeError& c : cases) {
    auto r = Decode(c.body);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_EQ(ErrorField(r.status()), c.field) << c.body << " -> " << r.status();
  }
}

TEST(HttpInjectDecodeTest, RecipientLimitAndDepthLimit) {
  std::string many = R"({"envelope_sender":"a@x","recipients":[)";
  for (int i = 0; i < 11; ++i) many += (i ? "," : "") + std::string("\"r@y\"");
  many += R"(],"content":"Subject: x\r\n\r\nb"})";
  auto r = Decode(many, 10);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorField(r.status()), "recipients");
  EXPECT_TRUE(Decode(many, 11).ok());
  std::string deep = std::string(100, '[') + std::string(100, ']');
  auto d = Decode(R"({"envelope_sender":"a@x","recipients":)" + deep + "}");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ErrorField(d.status()), "body");
}

TEST(HttpInjectDecodeTest, DecoderIsReusableAndLeavesTheBodyIntact) {
  InjectDecoder d(1 << 20);
  for (int i = 0; i < 3; ++i) {
    std::string body =
        R"({"envelope_sender":"a@x","recipients":["r@y"],"content":"S: x\r\n\r\nb"})";
    const std::string copy = body;
    auto r = d.Decode(body, DecodeLimits{});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(body, copy);
  }
}

// One big document grows the parser to its size; the decoder gives that back after it, so
// that a 32 MB body does not pin ~14 bytes of memory per byte on its loop for good.
TEST(HttpInjectDecodeTest, ABigDocumentDoesNotKeepTheParserBig) {
  InjectDecoder d(8 << 20);
  const size_t small = d.capacity();
  std::string body = R"({"envelope_sender":"a@x","recipients":["r@y"],"content":")";
  body += std::string(4 << 20, 'b');
  body += R"("})";
  auto r = d.Decode(body, DecodeLimits{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(d.capacity(), small);
  std::string bad = std::string(2 << 20, '[');  // refused (too deep), and shrunk all the same
  EXPECT_FALSE(d.Decode(bad, DecodeLimits{}).ok());
  EXPECT_LE(d.capacity(), small);
}

// ---- planning ----

class HttpPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    esmtp::PolicyOptions po;
    po.relay_hosts = {"10.0.0.0/8"};
    po.relay_domains = {"local.test"};
    auto p = esmtp::Policy::Create(po);
    ASSERT_TRUE(p.ok());
    policy_ = std::make_unique<esmtp::Policy>(*std::move(p));
    ctx_.policy = policy_.get();
    ctx_.peer = esmtp::IpAddress::Parse("192.0.2.1");  // not a relay host
    ctx_.peer_text = "192.0.2.1:4000";
    ctx_.hostname = "mx.test";
    ctx_.now_ms = 1'700'000'000'000;
    // One per recipient is what the listener draws; the tests here have fewer than this.
    for (int i = 0; i < 200; ++i) ctx_.ids.push_back(ids_.Next(ctx_.now_ms));
  }

  InjectRequest Structured(std::vector<InjectRecipient> recipients) {
    InjectRequest r;
    r.envelope_sender = "bounce@x.test";
    r.recipients = std::move(recipients);
    r.structured.from = "s@x.test";
    r.structured.subject = "Hello {{name}}";
    r.structured.text_body = "Dear {{name}} of {{shop}}";
    r.structured.html_body = "<p>{{name}}</p>";
    r.global_substitution = SubstitutionValues{{"shop", "Acme"}, {"name", "customer"}};
    return r;
  }

  std::unique_ptr<esmtp::Policy> policy_;
  core::MessageIdGenerator ids_{3, 42};
  InjectContext ctx_;
};

// The percent hack through a relay domain is routing, refused like any other relay.
TEST_F(HttpPlanTest, RoutingThroughARelayDomainIsNotPermitted) {
  InjectRequest r = Structured({{"a@local.test", "", {}}, {"u%evil.test@local.test", "", {}}});
  auto plan = PlanInjection(r, ctx_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->messages.size(), 1u);
  EXPECT_EQ(plan->messages[0]->envelope.recipients.size(), 1u);
  ASSERT_EQ(plan->failures.size(), 1u);
  EXPECT_EQ(plan->failures[0].email, "u%evil.test@local.test");
  EXPECT_EQ(plan->failures[0].reason, "relay not permitted");
}

TEST_F(HttpPlanTest, OneMessageForAllRecipientsWhenNotTemplated) {
  InjectRequest r = Structured(
      {{"a@local.test", "Ann", {}}, {"b@local.test", "", {}}, {"c@elsewhere.test", "", {}}});
  auto plan = PlanInjection(r, ctx_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->messages.size(), 1u);
  const core::Message& m = *plan->messages[0];
  ASSERT_EQ(m.envelope.recipients.size(), 2u);
  EXPECT_EQ(m.envelope.recipients[0].address, "a@local.test");
  EXPECT_EQ(m.envelope.mail_from, "bounce@x.test");
  EXPECT_EQ(m.envelope.peer, "192.0.2.1:4000");
  ASSERT_EQ(plan->failures.size(), 1u);
  EXPECT_EQ(plan->failures[0].email, "c@elsewhere.test");
  EXPECT_EQ(plan->failures[0].reason, "relay not permitted");
  const std::string body = m.body.ToString();
  EXPECT_THAT(body, HasSubstr("Subject: Hello customer\r\n"));  // global values still apply
  EXPECT_THAT(body, HasSubstr("To: Ann <a@local.test>, b@local.test\r\n"));
  EXPECT_THAT(body, HasSubstr("Message-ID: <" + m.id.ToHex() + "@mx.test>"));
  EXPECT_THAT(m.received_header, StartsWith("Received: from [192.0.2.1]\r\n\tby mx.test "
                                            "(ringmail) with HTTP id " +
                                            m.id.ToHex()));
}

TEST_F(HttpPlanTest, OneMessagePerRecipientWhenTemplated) {
  InjectRequest r = Structured({{"a@local.test", "", SubstitutionValues{{"name", "Ann"}}},
                                {"b@local.test", "", SubstitutionValues{{"name", "<Bob>"}}},
                                {"c@local.test", "", {}}});
  auto plan = PlanInjection(r, ctx_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->messages.size(), 3u);
  EXPECT_TRUE(plan->failures.empty());
  EXPECT_THAT(plan->messages[0]->body.ToString(), HasSubstr("Subject: Hello Ann\r\n"));
  EXPECT_THAT(plan->messages[0]->body.ToString(), HasSubstr("To: a@local.test\r\n"));
  EXPECT_THAT(plan->messages[1]->body.ToString(), HasSubstr("&lt;Bob&gt;"));  // html escaped
  EXPECT_THAT(plan->messages[2]->body.ToString(), HasSubstr("Subject: Hello customer"));
  EXPECT_NE(plan->messages[0]->id, plan->messages[1]->id);
  for (const auto& m : plan->messages) {
    ASSERT_EQ(m->envelope.recipients.size(), 1u);
    EXPECT_THAT(m->received_header, HasSubstr("for <" + m->envelope.recipients[0].address));
  }
}

TEST_F(HttpPlanTest, RelayByClientAddress) {
  ctx_.peer = esmtp::IpAddress::Parse("10.1.2.3");
  InjectRequest r = Structured({{"anyone@anywhere.test", "", {}}});
  auto plan = PlanInjection(r, ctx_);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->messages.size(), 1u);
  EXPECT_TRUE(plan->failures.empty());
  ctx_.peer.reset();
  plan = PlanInjection(r, ctx_);
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->messages.empty());
  EXPECT_EQ(plan->failures.size(), 1u);
}

TEST_F(HttpPlanTest, SubstitutionCannotInjectHeaders) {
  InjectRequest r =
      Structured({{"a@local.test", "", SubstitutionValues{{"name", "x\r\nBcc: e@v"}}}});
  auto plan = PlanInjection(r, ctx_);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(ErrorField(plan.status()), "content.subject");
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("recipients[0]"));
}

TEST_F(HttpPlanTest, BadAddressesAre400WithTheirField) {
  struct Case {
    std::string sender;
    std::string rcpt;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"a@x.test> SIZE=1", "r@local.test", "envelope_sender"},
      {"a@x.test\r\n", "r@local.test", "envelope_sender"},
      {"not an address", "r@local.test", "envelope_sender"},
      {"a@x.test", "r@local.test> NOTIFY=NEVER", "recipients[0].email"},
      {"a@x.test", "r@local.test\r\nRCPT TO:<x@y>", "recipients[0].email"},
      {"a@x.test", "", "recipients[0].email"},
      {"a@x.test", "@local.test", "recipients[0].email"},
  };
  for (const Case& c : cases) {
    InjectRequest r = Structured({{c.rcpt, "", {}}});
    r.envelope_sender = c.sender;
    auto plan = PlanInjection(r, ctx_);
    ASSERT_FALSE(plan.ok()) << c.sender << " " << c.rcpt;
    EXPECT_EQ(ErrorField(plan.status()), c.field) << c.sender << " " << c.rcpt;
  }
}

TEST_F(HttpPlanTest, Utf8AddressesAskForSmtputf8) {
  InjectRequest r = Structured({{"j\xC3\xBCrgen@local.test", "", {}}});
  auto plan = PlanInjection(r, ctx_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->messages[0]->envelope.mail_params, "SMTPUTF8");
}

TEST_F(HttpPlanTest, RawContentIsNormalised) {
  InjectRequest r;
  r.envelope_sender = "";
  r.recipients = {{"a@local.test", "", {}}, {"postmaster", "", {}}};
  r.raw = true;
  r.raw_content = "Subject: caf\xC3\xA9\nX-Folded: a\n b\n\nline1\nline2";
  auto plan = PlanInjection(r, ctx_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->messages.size(), 1u);
  const core::Message& m = *plan->messages[0];
  EXPECT_EQ(m.envelope.recipients.size(), 2u) << "postmaster is always accepted";
  EXPECT_EQ(m.envelope.mail_params, "BODY=8BITMIME");
  const std::string body = m.body.ToString();
  EXPECT_THAT(body, StartsWith("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\nMessage-ID: <"));
  EXPECT_THAT(body,
              HasSubstr("Subject: caf\xC3\xA9\r\nX-Folded: a\r\n b\r\n\r\nline1\r\nline2\r\n"));
}

TEST(HttpRawTest, NormalizeRawMessageRefusals) {
  bool eight = false;
  struct Case {
    std::string raw;
    bool ok;
  };
  const std::vector<Case> cases = {
      {"Subject: x\r\n\r\nbody", true},
      {"Subject: x", true},               // header only
      {"\r\nbody without header", true},  // empty header section
      {"Date: d\r\nMessage-ID: <m@x>\r\n\r\nb", true},
      {"just text\r\n\r\nbody", false},
      {" folded first\r\n\r\nb", false},
      {"Subject: x\r\n\r\n" + std::string(999, 'a'), false},
      {"Subject: x\r\n\r\n" + std::string(998, 'a'), true},
      {std::string("Subject: x\r\n\r\nnul\0byte", 22), false},
  };
  for (const Case& c : cases) {
    auto r = NormalizeRawMessage(c.raw, "<id@x>", "DATE", &eight);
    EXPECT_EQ(r.ok(), c.ok) << c.raw.substr(0, 40) << " " << r.status();
    if (!r.ok()) {
      EXPECT_EQ(ErrorField(r.status()), "content");
    }
  }
  auto kept = NormalizeRawMessage("date: x\r\nmessage-id: <y>\r\n\r\nb", "<id@x>", "D", &eight);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(*kept, "date: x\r\nmessage-id: <y>\r\n\r\nb\r\n");
  EXPECT_FALSE(eight);
}

TEST_F(HttpPlanTest, TemplatesNeedStructuredContent) {
  InjectRequest r;
  r.envelope_sender = "a@x.test";
  r.recipients = {{"a@local.test", "", SubstitutionValues{{"n", "v"}}}};
  r.raw = true;
  r.raw_content = "Subject: x\r\n\r\nb";
  auto plan = PlanInjection(r, ctx_);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(ErrorField(plan.status()), "content");
}

TEST_F(HttpPlanTest, SizesAreBounded) {
  InjectRequest r = Structured({});
  for (int i = 0; i < 10; ++i) {
    r.recipients.push_back(
        {"r" + std::to_string(i) + "@local.test", "", SubstitutionValues{{"name", "x"}}});
  }
  r.structured.text_body = std::string(10'000, 'z');
  ctx_.message_bytes_max = 20'000;
  ctx_.request_bytes_max = 50'000;
  auto plan = PlanInjection(r, ctx_);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kResourceExhausted);
  ctx_.request_bytes_max = 1'000'000;
  EXPECT_TRUE(PlanInjection(r, ctx_).ok());
  ctx_.message_bytes_max = 5'000;
  EXPECT_EQ(PlanInjection(r, ctx_).status().code(), absl::StatusCode::kResourceExhausted);
}

// Requests built together (on the IO pool) share the loop's budget as they build: the one
// that would take it past its limit is turned away (503), and gives back what it took.
TEST_F(HttpPlanTest, MessagesAreChargedToTheLoopsBudgetAsTheyAreBuilt) {
  InjectRequest r = Structured({});
  for (int i = 0; i < 10; ++i) {
    r.recipients.push_back(
        {"r" + std::to_string(i) + "@local.test", "", SubstitutionValues{{"name", "x"}}});
  }
  r.structured.text_body = std::string(10'000, 'z');
  auto budget = std::make_shared<InjectBudget>();
  ctx_.budget = budget;
  ctx_.budget_limit = 250'000;  // room for two of these requests (~101 KB each), not three

  auto first = PlanInjection(r, ctx_);
  ASSERT_TRUE(first.ok()) << first.status();
  uint64_t sizes = 0;
  for (const auto& m : first->messages) sizes += m->content_size();
  EXPECT_EQ(first->charge.held(), sizes);
  EXPECT_EQ(budget->used(), sizes);
  auto second = PlanInjection(r, ctx_);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(budget->used(), 2 * sizes);

  auto third = PlanInjection(r, ctx_);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ResponseForStatus(third.status(), ErrorStage::kRequest).status, 503);
  EXPECT_EQ(budget->used(), 2 * sizes);  // its first messages were given back

  first->charge.Release(first->messages[0]->content_size());  // the spool answered one
  EXPECT_EQ(budget->used(), 2 * sizes - first->messages[0]->content_size());
  *first = InjectionPlan();  // a plan dropped gives back the rest
  EXPECT_EQ(budget->used(), sizes);
  EXPECT_TRUE(PlanInjection(r, ctx_).ok());
  second->messages.clear();
  second = absl::UnavailableError("gone");
  EXPECT_EQ(budget->used(), 0u);
}

TEST(HttpInjectBudgetTest, ChargesAreAllOrNothingWithinTheLimit) {
  auto budget = std::make_shared<InjectBudget>();
  BudgetCharge a(budget);
  EXPECT_TRUE(a.TryAdd(60, 100));
  EXPECT_FALSE(a.TryAdd(41, 100));
  EXPECT_TRUE(a.TryAdd(40, 100));
  EXPECT_FALSE(a.TryAdd(1, 100));
  EXPECT_FALSE(a.TryAdd(UINT64_MAX, 100));
  BudgetCharge b = std::move(a);
  EXPECT_EQ(b.held(), 100u);
  EXPECT_EQ(a.held(), 0u);  // NOLINT(bugprone-use-after-move): moved-from holds nothing
  b.Release(30);
  EXPECT_EQ(budget->used(), 70u);
  BudgetCharge none;  // no budget: never refuses, holds nothing
  EXPECT_TRUE(none.TryAdd(UINT64_MAX, 0));
  EXPECT_EQ(none.held(), 0u);
}

TEST(HttpResultJsonTest, OneIdOrSeveral) {
  EXPECT_EQ(InjectResultJson(2, {}, {"aa"}),
            "{\"success_count\":2,\"failure_count\":0,\"failures\":[],\"id\":\"aa\"}\n");
  EXPECT_EQ(InjectResultJson(2, {{"x@y", "relay not permitted"}}, {"aa", "bb"}),
            "{\"success_count\":2,\"failure_count\":1,\"failures\":[{\"email\":\"x@y\","
            "\"reason\":\"relay not permitted\"}],\"ids\":[\"aa\",\"bb\"]}\n");
  EXPECT_EQ(InjectResultJson(0, {}, {}),
            "{\"success_count\":0,\"failure_count\":0,\"failures\":[],\"ids\":[]}\n");
}

}  // namespace
}  // namespace ringmail::listeners::http
