/* cverse-node: the node binary. Everything happens in cv_node_main (run.c, in the node library), so that
 * a program can be its own node binary with its object types linked in (include/cverse/node.h). */
#include "cverse/node.h"

int main(int argc, char **argv)
{
    return cv_node_main(argc, argv, NULL);
}
