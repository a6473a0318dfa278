#include "tests/spool/spool_test_util.h"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>
#include <vector>

#include "gtest/gtest.h"
#include "spool/crc32c.h"
#include "spool/internal/le_bytes.h"

namespace ringmail::spool::testing {

TempDir::TempDir() {
  char templ[] = "/tmp/ringmail-spool-test-XXXXXX";
  char* made = ::mkdtemp(templ);
  if (made == nullptr) std::abort();
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

core::MessageId TestId(uint64_t n) { return core::MessageId{0x0123000000000000ull | n, ~n}; }

core::Message MakeMessage(uint64_t n, size_t recipients, std::string_view body) {
  core::Message m;
  m.id = TestId(n);
  m.received_ms = 1700000000000ull + n;
  m.envelope.mail_from = "sender" + std::to_string(n) + "@example.org";
  m.envelope.mail_params = "BODY=8BITMIME";
  m.envelope.helo = "client.example.org";
  m.envelope.peer = "127.0.0.1:40000";
  for (size_t i = 0; i < recipients; ++i) {
    core::Recipient r;
    r.address = "rcpt" + std::to_string(i) + "@example.com";
    r.params = i % 2 ? "NOTIFY=NEVER" : "";
    m.envelope.recipients.push_back(r);
  }
  m.received_header = "Received: from client.example.org ([127.0.0.1])\r\n\tby test; id " +
                      std::to_string(n) + "\r\n";
  m.body.Append(body);
  return m;
}

SegmentFileWriter::SegmentFileWriter(const std::string& spool_dir, SegmentId id,
                                     uint64_t file_bytes) {
  MakeDirs(LoopDirPath(spool_dir, id.loop));
  path_ = SegmentPath(spool_dir, id);
  fd_ = ::open(path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  EXPECT_GE(fd_, 0) << path_;
  std::string header = EncodeSegmentHeader(SegmentHeader{id.loop, id.seq, 1700000000000ull,
                                                         file_bytes});
  EXPECT_EQ(::write(fd_, header.data(), header.size()), static_cast<ssize_t>(header.size()));
  EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(file_bytes)), 0);
}

SegmentFileWriter::~SegmentFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t SegmentFileWriter::Append(std::string_view bytes) {
  uint64_t at = offset_;
  EXPECT_EQ(::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(at)),
            static_cast<ssize_t>(bytes.size()));
  offset_ += bytes.size();
  return at;
}

uint64_t SegmentFileWriter::AppendMessage(const core::Message& message) {
  absl::StatusOr<EncodedRecord> rec = EncodeMessage(message);
  EXPECT_TRUE(rec.ok()) << rec.status();
  return Append(rec->Flatten());
}

uint64_t SegmentFileWriter::AppendRecipient(const core::MessageId& id, uint32_t index,
                                            core::RecipientState state, uint32_t attempts,
                                            uint64_t changed_ms, std::string reply) {
  RecipientUpdate u;
  u.id = id;
  u.recipient_index = index;
  u.state = state;
  u.attempts = attempts;
  u.next_attempt_ms = state == core::RecipientState::kDeferred ? changed_ms + 60000 : 0;
  u.changed_ms = changed_ms;
  u.reply = std::move(reply);
  return Append(EncodeRecipient(u));
}

uint64_t SegmentFileWriter::AppendDone(const core::MessageId& id, uint64_t done_ms) {
  return Append(EncodeDone(DoneMark{id, done_ms}));
}

std::string CraftRecord(uint8_t type, std::string_view meta, std::string_view content,
                        uint8_t version, uint16_t flags, uint64_t length_override) {
  std::string fields;
  internal::PutU8(&fields, type);
  internal::PutU8(&fields, version);
  internal::PutU16(&fields, flags);
  internal::PutU32(&fields, static_cast<uint32_t>(meta.size()));
  uint64_t length = kRecordHeaderBytes + meta.size() + content.size();
  internal::PutU64(&fields, length_override ? length_override : length);
  std::string rec(4, '\0');
  internal::PutU32(&rec, Crc32c(fields));
  rec += fields;
  rec += meta;
  rec += content;
  rec.append(AlignRecord(rec.size()) - rec.size(), '\0');
  internal::StoreU32At(&rec, 0, Crc32c(std::string_view(rec).substr(4)));
  return rec;
}

std::string ReadFileBytes(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

void WriteFileBytes(const std::string& path, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << path;
  EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

void OverwriteAt(const std::string& path, uint64_t offset, std::string_view bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  EXPECT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::string all = ReadFileBytes(path);
  ASSERT_LT(offset, all.size());
  char flipped = static_cast<char>(all[offset] ^ 0x5a);
  OverwriteAt(path, offset, std::string_view(&flipped, 1));
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void MakeDirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  ASSERT_FALSE(ec) << path << ": " << ec.message();
}

std::optional<FileExtents> CountFileExtents(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr size_t kMaxExtents = 512;
  std::vector<char> buf(sizeof(fiemap) + kMaxExtents * sizeof(fiemap_extent));
  auto* fm = reinterpret_cast<fiemap*>(buf.data());
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = kMaxExtents;
  int rc = ::ioctl(fd, FS_IOC_FIEMAP, fm);
  ::close(fd);
  if (rc != 0 || fm->fm_mapped_extents == 0) return std::nullopt;
  FileExtents count;
  for (uint32_t i = 0; i < fm->fm_mapped_extents; ++i) {
    ++count.extents;
    if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) ++count.unwritten;
  }
  return count;
}

}  // namespace ringmail::spool::testing
