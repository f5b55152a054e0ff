// prootbundle: proot and the C library it is linked against in one static
// file, for phones whose own libraries (Android's) proot was not built
// for. scripts/build-proot.sh fills bundle/ from Debian's packages and
// builds it; bundle/ is never committed.
module github.com/phonefarm/phonefarm/tools/prootbundle

go 1.26
