/* Running a cverse node from your own program: cv_node_main with your object types linked in. */
#ifndef CVERSE_NODE_H
#define CVERSE_NODE_H

#include <cverse/object.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Runs a cverse node process exactly like the cverse-node binary (same options: --config, --node-id,
 * --module PATH.so, ...; see `--help`) until it is stopped (SIGTERM/SIGINT), and returns the process
 * exit code: 0 stopped cleanly, 1 runtime failure (e.g. a port in use), 2 bad arguments, configuration
 * or module. extra_types (may be NULL) is called once with the node's registry before the modules are
 * loaded, to register the program's own types with cv_register_type; a nonzero return refuses to start
 * (exit 2). Call it once per process, from main:
 *
 *     static int my_types(cv_registry *reg) { return cv_register_type(reg, &my_counter_type); }
 *     int main(int argc, char **argv) { return cv_node_main(argc, argv, my_types); }
 */
int cv_node_main(int argc, char **argv, cv_module_init_fn extra_types);

#ifdef __cplusplus
}
#endif
#endif
