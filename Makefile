# PGXS build for tasker.  `make && make install`, then `make check-all` (see README).
EXTENSION   = tasker
EXTVERSION  = 0.6.0

MODULE_big  = tasker
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script of the current version is assembled from one file per
# concern, in this order.  versions/ holds the frozen install scripts of
# released versions and the update scripts between them (see
# doc/upgrades.md); test/t/060_upgrade.pl checks that the chain from the
# first release ends in the same catalog as a fresh install.
SQL_PARTS   = $(sort $(wildcard src/sql/*.sql))
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
DATA        = $(sort $(wildcard versions/$(EXTENSION)--*.sql))
EXTRA_CLEAN = $(EXTENSION)--$(EXTVERSION).sql

PG_CPPFLAGS = -Isrc -Wall -Wextra -Werror -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK += -lyaml

# Every sql/*.sql is a test; create_extension runs first, the rest share its
# database and keep to their own namespaces.
REGRESS     = create_extension $(filter-out create_extension, \
              $(sort $(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --temp-config=$(srcdir)/test/tasker.conf

ISOLATION   = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --temp-config=$(srcdir)/test/isolation/tasker.conf

PG_CONFIG  ?= pg_config
PGXS       := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS knows nothing of our headers: rebuild every object when one changes.
$(OBJS): $(wildcard src/*.h)

$(EXTENSION)--$(EXTVERSION).sql: $(SQL_PARTS)
	cat $^ > $@

# Tests against a throwaway instance with tasker preloaded (must not run as root).
.PHONY: check-regress check-isolation check-tap
check-regress:
	$(pg_regress_installcheck) --temp-instance=./tmp_check $(REGRESS_OPTS) $(REGRESS)

check-isolation:
	$(pg_isolation_regress_installcheck) --temp-instance=./tmp_check_iso \
	  --inputdir=test/isolation --outputdir=test/isolation/output_iso \
	  $(ISOLATION_OPTS) $(ISOLATION)

check-tap:
	rm -rf tmp_check && mkdir -p tmp_check
	TESTDIR='$(CURDIR)' PATH="$(bindir):$$PATH" PGPORT='6$(DEF_PGPORT)' \
	  PG_REGRESS='$(top_builddir)/src/test/regress/pg_regress' \
	  $(PROVE) $(PG_PROVE_FLAGS) -I test $(PROVE_FLAGS) --verbose $(if $(PROVE_TESTS),$(PROVE_TESTS),test/t/*.pl)
