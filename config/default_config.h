// config/default_config.h — the configuration ringmaild runs on without --config.
//
// ESMTP on 127.0.0.1:2525, spool under ./var/spool, logs under ./var/log, relay for
// 127.0.0.0/8 and ::1 only (never an open relay), control socket ./var/run/ringmail.sock,
// no eventloop pools (the master loop does everything), no license (1 loop).
// It is configuration TEXT parsed by the same parser as any file, so it is also a working
// example; `ringctl config show` of a daemon started without --config renders it.
#pragma once

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "config/config.h"

namespace ringmail::config {

// Name under which the default text is loaded (what errors and `source` say).
inline constexpr std::string_view kDefaultConfigName = "<default config>";

std::string_view DefaultConfigText();
absl::StatusOr<std::shared_ptr<const Config>> LoadDefaultConfig();

}  // namespace ringmail::config
