/* A shared object without veil_plugin_entry: the loader must refuse it. */
#include <veil/veil.h>

VEIL_PLUGIN_EXPORT int not_a_plugin(void) { return 42; }
