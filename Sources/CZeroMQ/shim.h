// libzmq. Linked by name, not through pkg-config: libzmq.pc emits -isystem flags that
// SwiftPM rejects as unsafe on every build.
#include <zmq.h>
