// SendQueue: one send in flight, what is queued meanwhile goes next, a short send resumes
// where it stopped, and the buffers are reused rather than reallocated between replies.
// The SQEs are prepared into plain structs: what a SEND would be given is what is checked.
#include <liburing.h>

#include <string>
#include <string_view>

#include "core/send_queue.h"
#include "gtest/gtest.h"

namespace ringmail::core {
namespace {

// The bytes a SEND prepared now would write.
std::string_view Prepared(const SendQueue& q) {
  io_uring_sqe sqe{};
  q.PrepareSend(&sqe, 7);
  EXPECT_EQ(sqe.opcode, IORING_OP_SEND);
  EXPECT_EQ(sqe.fd, 7);
  return {reinterpret_cast<const char*>(sqe.addr), sqe.len};
}

TEST(SendQueueTest, WhatQueuesDuringASendGoesInTheNextOne) {
  SendQueue q;
  EXPECT_FALSE(q.sending());
  EXPECT_TRUE(q.Queue(std::string_view("250 2.1.0 Ok\r\n")));  // start a send
  EXPECT_TRUE(q.sending());
  EXPECT_FALSE(q.Queue(std::string_view("250 2.1.5 Ok\r\n")));  // one is in flight: wait
  EXPECT_FALSE(q.Queue(std::string_view("354 Go ahead\r\n")));
  EXPECT_EQ(q.queued_bytes(), 28u);
  EXPECT_EQ(q.backlog_bytes(), 42u);
  EXPECT_EQ(Prepared(q), "250 2.1.0 Ok\r\n");
  EXPECT_TRUE(q.Sent(14));  // the two queued replies leave together
  EXPECT_EQ(Prepared(q), "250 2.1.5 Ok\r\n354 Go ahead\r\n");
  EXPECT_EQ(q.queued_bytes(), 0u);
  EXPECT_FALSE(q.Sent(28));  // all sent
  EXPECT_FALSE(q.sending());
  EXPECT_EQ(q.backlog_bytes(), 0u);
}

TEST(SendQueueTest, AShortSendResumesWhereItStopped) {
  SendQueue q;
  ASSERT_TRUE(q.Queue(std::string_view("0123456789")));
  EXPECT_TRUE(q.Sent(4));
  EXPECT_EQ(Prepared(q), "456789");
  EXPECT_FALSE(q.Queue(std::string_view("ab")));
  EXPECT_EQ(q.backlog_bytes(), 8u);
  EXPECT_TRUE(q.Sent(5));
  EXPECT_EQ(Prepared(q), "9");
  EXPECT_TRUE(q.Sent(1));
  EXPECT_EQ(Prepared(q), "ab");
  EXPECT_FALSE(q.Sent(2));
}

// A buffer given back between two replies would be handed to the next allocation of its
// size (the "squatter" strings below take it), and the queue's next reply would then land
// somewhere else: the addresses show whether the queue kept its two buffers.
TEST(SendQueueTest, BuffersAreReusedBetweenReplies) {
  const std::string reply(40, 'r');  // longer than a short string: it lives on the heap
  SendQueue q;
  ASSERT_TRUE(q.Queue(std::string_view(reply)));
  const char* first = Prepared(q).data();
  ASSERT_FALSE(q.Sent(reply.size()));
  std::string squatter1(reply);
  ASSERT_TRUE(q.Queue(std::string_view(reply)));
  EXPECT_EQ(Prepared(q).data(), first) << "the sent buffer was given back";
  // The queued buffer swaps in for the send and the sent one takes its place.
  ASSERT_FALSE(q.Queue(std::string_view(reply)));
  ASSERT_TRUE(q.Sent(reply.size()));
  const char* second = Prepared(q).data();
  EXPECT_NE(second, first);
  std::string squatter2(reply);
  ASSERT_FALSE(q.Queue(std::string_view(reply)));
  ASSERT_TRUE(q.Sent(reply.size()));
  EXPECT_EQ(Prepared(q).data(), first) << "the swapped-out buffer was given back";
  ASSERT_FALSE(q.Sent(reply.size()));
  std::string squatter3(reply);
  ASSERT_TRUE(q.Queue(std::string_view(reply)));
  EXPECT_EQ(Prepared(q).data(), first);
}

TEST(SendQueueTest, AnOwnedStringIsAdoptedWithoutACopy) {
  std::string record(4096, 'c');
  const char* data = record.data();
  SendQueue q;
  ASSERT_TRUE(q.Queue(std::move(record)));
  EXPECT_EQ(Prepared(q).data(), data);
  std::string more(100, 'd');
  EXPECT_FALSE(q.Queue(std::move(more)));  // in flight: appended behind it
  EXPECT_EQ(q.queued_bytes(), 100u);
}

TEST(SendQueueTest, ClearDropsEverythingAndEmptyBytesQueueNothing) {
  SendQueue q;
  EXPECT_FALSE(q.Queue(std::string_view()));
  EXPECT_FALSE(q.Queue(std::string()));
  EXPECT_FALSE(q.sending());
  ASSERT_TRUE(q.Queue(std::string_view("221 2.0.0 Bye\r\n")));
  ASSERT_FALSE(q.Queue(std::string_view("more")));
  q.Clear();
  EXPECT_FALSE(q.sending());
  EXPECT_EQ(q.backlog_bytes(), 0u);
  EXPECT_TRUE(q.Queue(std::string_view("x")));  // a fresh start
  EXPECT_EQ(Prepared(q), "x");
}

}  // namespace
}  // namespace ringmail::core
