#include "tests/delivery/engine_harness_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "config/generation.h"
#include "spool/record.h"
#include "spool/segment_format.h"

namespace ringmail::delivery::testing {
namespace {

constexpr auto kAwait = std::chrono::seconds(20);

}  // namespace

absl::StatusOr<std::shared_ptr<config::Config>> TestConfig(const std::string& text) {
  absl::StatusOr<std::shared_ptr<const config::Config>> loaded =
      config::LoadConfigString(text, "engine-test");
  if (!loaded.ok()) return loaded.status();
  auto c = std::make_shared<config::Config>(**loaded);
  c->global.retry_interval = absl::Milliseconds(200);
  c->global.max_retry_interval = absl::Seconds(2);
  c->global.smtp_connect_timeout = absl::Seconds(5);
  c->global.smtp_greeting_timeout = absl::Seconds(10);
  c->global.smtp_command_timeout = absl::Seconds(10);
  c->global.smtp_data_init_timeout = absl::Seconds(10);
  c->global.smtp_data_block_timeout = absl::Seconds(10);
  c->global.smtp_data_term_timeout = absl::Seconds(10);
  return c;
}

dns::ResolverOptions TestResolver(const std::string& server) {
  dns::ResolverOptions o;
  o.channel.servers = {server};
  o.channel.timeout_ms = 1000;
  o.channel.tries = 2;
  o.random_seed = 7;
  return o;
}

// ---- EngineHarness

absl::Status EngineHarness::Start(EngineOptions options, bool production_reports) {
  core::LoopOptions lo;
  lo.name = "engine-test";
  lo.index = 1;
  lo.inbox_capacity = 1 << 10;
  loop_ = std::make_unique<core::Loop>(lo);
  absl::Status s = loop_->Start();
  if (!s.ok()) {
    loop_.reset();
    return s;
  }
  auto sink = [this](uint32_t, std::vector<DeliveryReport>& batch) {
    std::lock_guard<std::mutex> lock(mu_);
    if (refuse_ > 0) {
      --refuse_;
      ++refused_;
      return core::PostResult::kFull;  // batch left intact: the engine keeps it
    }
    for (DeliveryReport& r : batch) reports_.push_back(std::move(r));
    batch.clear();
    cv_.notify_all();
    return core::PostResult::kOk;
  };
  if (!production_reports) options.report_sink = std::move(sink);
  absl::Status created;
  absl::Notification done;
  core::PostResult posted = loop_->Post([&] {
    absl::StatusOr<std::unique_ptr<Engine>> e = Engine::Create(*loop_, std::move(options));
    if (e.ok()) {
      engine_ = std::move(e).value();
    } else {
      created = e.status();
    }
    done.Notify();
  });
  if (posted != core::PostResult::kOk) return absl::InternalError("cannot post to the loop");
  done.WaitForNotification();
  return created;
}

void EngineHarness::Submit(DeliveryJob job) {
  Engine* e = engine_.get();
  loop_->Post([e, job = std::move(job)]() mutable { e->Submit(std::move(job)); });
}

void EngineHarness::OnLoop(absl::AnyInvocable<void(Engine&) &&> fn) {
  absl::Notification done;
  Engine* e = engine_.get();
  loop_->Post([&] {
    std::move(fn)(*e);
    done.Notify();
  });
  done.WaitForNotification();
}

std::vector<DomainSummary> EngineHarness::Summary() {
  std::vector<DomainSummary> out;
  OnLoop([&](Engine& e) { out = e.QueueSummary(); });
  return out;
}

EngineStats EngineHarness::Stats() {
  EngineStats out;
  OnLoop([&](Engine& e) { out = e.stats(); });
  return out;
}

bool EngineHarness::AwaitReports(
    const std::function<bool(const std::vector<DeliveryReport>&)>& done) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, kAwait, [&] { return done(reports_); });
}

bool EngineHarness::AwaitItems(core::RecipientState state, size_t n) {
  return AwaitReports([&](const std::vector<DeliveryReport>& reports) {
    size_t count = 0;
    for (const DeliveryReport& r : reports) {
      for (const DeliveryReport::Item& item : r.items) count += item.state == state;
    }
    return count >= n;
  });
}

std::vector<DeliveryReport> EngineHarness::reports() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reports_;
}

void EngineHarness::RefuseNextBatches(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  refuse_ = n;
}

int EngineHarness::refused_batches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_;
}

void EngineHarness::Stop() {
  if (!loop_) return;
  loop_->RequestStop();
  loop_->Join();
  engine_.reset();  // after its loop stopped, as its contract asks
  loop_.reset();
}

// ---- SpoolFile

SpoolFile::SpoolFile() {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr ? tmp : "/tmp") + "/ringmail-engine-XXXXXX";
  if (mkdtemp(templ.data()) != nullptr) dir_ = templ;
  spool::SegmentId id{0, 1};
  path_ = spool::SegmentPath(dir_, id);
  std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
  fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  spool::SegmentHeader header{0, 1, 1000, 64ull << 20};
  std::string bytes = spool::EncodeSegmentHeader(header);
  (void)!pwrite(fd_, bytes.data(), bytes.size(), 0);
  offset_ = spool::kSegmentHeaderBytes;
}

SpoolFile::~SpoolFile() {
  if (fd_ >= 0) close(fd_);
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

DeliveryJob SpoolFile::Add(const std::string& from, const std::vector<std::string>& recipients,
                           const std::string& domain, std::string_view body, bool eight_bit) {
  core::Message m;
  m.id = core::MessageId{0xE9, next_id_++};
  m.received_ms = static_cast<uint64_t>(absl::ToUnixMillis(absl::Now()));
  m.envelope.mail_from = from;
  if (eight_bit) m.envelope.mail_params = "BODY=8BITMIME";
  for (const std::string& r : recipients) m.envelope.recipients.push_back(core::Recipient{r, ""});
  m.received_header = "Received: from client.test by engine.test; Mon, 1 Jan 2024 00:00 +0000\r\n";
  m.body.Append(body);
  absl::StatusOr<spool::EncodedRecord> rec = spool::EncodeMessage(m);
  DeliveryJob job;
  if (!rec.ok()) return job;
  std::string bytes = rec->Flatten();
  (void)!pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset_));
  job.id = m.id;
  job.received_ms = m.received_ms;
  job.mail_from = from;
  job.mail_params = m.envelope.mail_params;
  job.domain = domain;
  for (uint32_t i = 0; i < recipients.size(); ++i) {
    job.recipients.push_back(DeliveryJob::Recipient{i, recipients[i], "", 0, 0});
  }
  job.segment_path = path_;
  job.content_offset = offset_ + rec->content_offset();
  job.content_length = rec->content_length;
  job.eight_bit = eight_bit;
  job.owner_loop = 0;
  offset_ += rec->size();
  return job;
}

std::string SpoolFile::ContentOf(const DeliveryJob& job) {
  std::string out(job.content_length, '\0');
  int fd = open(job.segment_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  ssize_t n = pread(fd, out.data(), out.size(), static_cast<off_t>(job.content_offset));
  close(fd);
  if (n != static_cast<ssize_t>(out.size())) return "";
  return out;
}

}  // namespace ringmail::delivery::testing
