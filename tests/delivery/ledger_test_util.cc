#include "tests/delivery/ledger_test_util.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "spool/segment_format.h"

namespace ringmail::delivery::testing {

TempDir::TempDir() {
  std::string tmpl = "/tmp/ledger_test.XXXXXX";
  char* made = ::mkdtemp(tmpl.data());
  EXPECT_NE(made, nullptr);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LoopThread::LoopThread(uint16_t index) : loop_(Options(index)) {
  absl::Status s = loop_.Start();
  started_ = s.ok();
  EXPECT_TRUE(started_) << s;
}

core::LoopOptions LoopThread::Options(uint16_t index) {
  core::LoopOptions o;
  o.name = "ledger-test";
  o.index = index;
  return o;
}

void LoopThread::Run(absl::FunctionRef<void()> f) {
  absl::Notification ran;
  core::PostResult r = loop_.Post([&] {
    f();
    ran.Notify();
  });
  ASSERT_EQ(r, core::PostResult::kOk);
  ran.WaitForNotification();
}

void LoopThread::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  loop_.RequestStop();
  loop_.Join();
}

std::unique_ptr<core::Message> TestMessage(uint64_t n, std::string from,
                                           std::vector<std::string> recipients,
                                           size_t body_bytes, std::string params) {
  auto m = std::make_unique<core::Message>();
  m->id = core::MessageId{0x0123456789ab0000ull | (n & 0xffff), 0x5eed000000000000ull + n};
  m->received_ms = 1700000000000ull + n;
  m->envelope.mail_from = std::move(from);
  m->envelope.mail_params = std::move(params);
  m->envelope.helo = "client.test";
  m->envelope.peer = "127.0.0.1:40000";
  for (std::string& r : recipients) {
    core::Recipient rc;
    rc.address = std::move(r);
    m->envelope.recipients.push_back(std::move(rc));
  }
  m->received_header = absl::StrCat("Received: from client.test by mx.test; message ", n, "\r\n");
  std::string body = absl::StrCat("Subject: test message ", n, "\r\nFrom: <",
                                  m->envelope.mail_from, ">\r\n\r\n");
  uint64_t x = n * 0x9E3779B97F4A7C15ull + 1;
  while (body.size() < body_bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    body.push_back(static_cast<char>('a' + x % 26));
    if (body.size() % 76 == 0) body += "\r\n";
  }
  body += "\r\n";
  m->body.Append(body);
  return m;
}

std::string ContentOf(const core::Message& m) { return m.received_header + m.body.ToString(); }

std::string ReadRange(const std::string& path, uint64_t offset, uint64_t length) {
  std::string out(length, '\0');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  size_t got = 0;
  while (got < length) {
    ssize_t n = ::pread(fd, out.data() + got, length - got, static_cast<off_t>(offset + got));
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

spool::RecoveryResult Recover(const std::string& spool_dir) {
  absl::StatusOr<spool::RecoveryResult> r =
      spool::RecoverSpool(spool_dir, spool::ReadOnlyRecoveryOptions());
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return {};
  return std::move(r).value();
}

const std::deque<spool::CommitRequest>& Committer::CommitAll(
    LoopThread& lt, spool::SpoolWriter& writer,
    std::vector<std::unique_ptr<core::Message>> messages) {
  size_t first = requests_.size();
  for (auto& m : messages) {
    spool::CommitRequest& r = requests_.emplace_back();
    r.Bind<&Committer::Done>(this);
    r.message = std::move(m);
  }
  lt.Run([&] {
    for (size_t i = first; i < requests_.size(); ++i) writer.Commit(requests_[i]);
  });
  absl::MutexLock lock(&mu_);
  size_t want = requests_.size();
  auto reached = [this, want]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return done_ >= want; };
  EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(60)));
  for (const spool::CommitRequest& r : requests_) EXPECT_TRUE(r.status.ok()) << r.status;
  return requests_;
}

void Committer::Done(spool::CommitRequest&) {
  absl::MutexLock lock(&mu_);
  ++done_;
}

LedgerNode::LedgerNode(Setup setup) : lt_(setup.loop_index) {
  if (!lt_.started()) return;
  spool::SpoolWriterOptions so;
  so.spool_dir = setup.spool_dir;
  so.loop_index = setup.loop_index;
  so.segment_bytes = setup.segment_bytes;
  so.first_sequence = setup.first_sequence;
  LedgerOptions options = std::move(setup.options);
  options.spool_dir = setup.spool_dir;
  options.dispatch = [this](DeliveryJob& job) { return Dispatch(job); };
  options.progress = [this] { Published(); };
  bool with_ledger = setup.with_ledger;
  lt_.Run([&] {
    if (with_ledger) ledger_ = std::make_unique<Ledger>(lt_.loop(), std::move(options));
    auto w = spool::SpoolWriter::Open(lt_.loop(), so, ledger_.get(),
                                      with_ledger ? &ledger_->live_index() : nullptr);
    ASSERT_TRUE(w.ok()) << w.status();
    writer_ = std::move(w).value();
    if (with_ledger) {
      absl::Status s = ledger_->Start(*writer_);
      ASSERT_TRUE(s.ok()) << s;
    }
  });
}

void LedgerNode::Adopt(LedgerAdoption adoption) {
  lt_.Run([&] { ledger_->Adopt(std::move(adoption)); });
}

const std::deque<spool::CommitRequest>& LedgerNode::Commit(
    std::vector<std::unique_ptr<core::Message>> messages) {
  committers_.push_back(std::make_unique<Committer>());
  return committers_.back()->CommitAll(lt_, *writer_, std::move(messages));
}

void LedgerNode::Report(DeliveryReport report) {
  lt_.Run([&] { ledger_->Report(std::move(report)); });
}

void LedgerNode::AppendState(std::variant<spool::RecipientUpdate, spool::DoneMark> record) {
  struct Waiter {
    void Done(spool::StateRequest&) { done.Notify(); }
    absl::Notification done;
  } waiter;
  spool::StateRequest request;
  request.record = std::move(record);
  request.Bind<&Waiter::Done>(&waiter);
  lt_.Run([&] { writer_->AppendState(request); });
  waiter.done.WaitForNotification();
  EXPECT_TRUE(request.status.ok()) << request.status;
}

void LedgerNode::Published() {
  absl::MutexLock lock(&mu_);
  stats_ = ledger_->stats();
}

core::PostResult LedgerNode::Dispatch(DeliveryJob& job) {
  absl::MutexLock lock(&mu_);
  if (inbox_full_) return core::PostResult::kFull;
  jobs_.push_back(std::move(job));
  ++jobs_seen_;
  return core::PostResult::kOk;
}

bool LedgerNode::AwaitStats(absl::FunctionRef<bool(const LedgerStats&)> pred) {
  absl::MutexLock lock(&mu_);
  auto holds = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return pred(stats_); };
  return mu_.AwaitWithTimeout(absl::Condition(&holds), absl::Seconds(60));
}

bool LedgerNode::AwaitJobs(size_t count) {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return jobs_.size() >= count; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(60));
}

std::vector<DeliveryJob> LedgerNode::TakeJobs() {
  absl::MutexLock lock(&mu_);
  return std::exchange(jobs_, {});
}

void LedgerNode::set_inbox_full(bool full) {
  absl::MutexLock lock(&mu_);
  inbox_full_ = full;
}

LedgerStats LedgerNode::Stats() {
  LedgerStats s;
  lt_.Run([&] { s = ledger_->stats(); });
  return s;
}

void LedgerNode::Stop() {
  if (stopped_) return;
  stopped_ = true;
  lt_.Stop();
  ledger_.reset();
  writer_.reset();
}

}  // namespace ringmail::delivery::testing
