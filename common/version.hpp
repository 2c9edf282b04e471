// Strata's version for provenance fields: the project version and `git describe` of the source
// tree when it was built ("0.1.0+a1b2c3d-dirty").
#pragma once

namespace strata {

const char* version();

}  // namespace strata
