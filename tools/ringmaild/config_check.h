// tools/ringmaild/config_check.h — what `ringmaild --check-config` and `ringctl config check`
// verify beyond the parse: the parts that start-up and a reload build from a configuration
// and refuse it for (the ESMTP and HTTP listeners' settings with their TLS certificates and
// keys, the outbound TLS context with its CA file). Without them a check said "OK" for a
// key that does not match its certificate, which the reload then refused (session 12's
// reload audit, F7).
//
// Blocking: it reads the TLS files. Call it off the loops (an IO worker, or main before the
// daemon starts).
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "config/config.h"

namespace ringmail::daemon {

absl::Status CheckListenersAndTls(const std::shared_ptr<const config::Config>& config);

}  // namespace ringmail::daemon
