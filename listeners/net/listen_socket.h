// listeners/net/listen_socket.h — the socket calls every TCP listener shares: a listening
// socket for one loop (SO_REUSEPORT, so each loop of a pool has its own on the same
// address) and the peer of an accepted connection. Start-up / once per connection only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/address.h"

namespace ringmail::listeners {

// Binds and listens on `address` (IPv6 sockets are V6ONLY; TCP_NODELAY is set so accepted
// sockets inherit it). `*bound_port` gets the port actually bound (port 0 in tests).
// `who` names the listener in the error ("ESMTP_Listener").
absl::StatusOr<int> OpenListenSocket(const config::NetAddress& address, int backlog,
                                     std::string_view who, uint16_t* bound_port);

// The peer of an accepted socket as text and port; an IPv4-mapped IPv6 peer shows as IPv4
// so that relay rules written for IPv4 match it. False when the peer is already gone.
bool PeerOf(int fd, std::string* ip, uint16_t* port);

}  // namespace ringmail::listeners
