/* engines.h: the one list of source and target types. The capture (snapshot/) and the
 * revert (restore/) build their tables of drivers from it: snp_<type>_driver and
 * rst_<type>_driver, so a type is added in one place and both sides must follow. */
#ifndef SNAP_ENGINES_H
#define SNAP_ENGINES_H

#define SNAP_ENGINES(X) X(files) X(images) X(mysql) X(postgres)

#endif
