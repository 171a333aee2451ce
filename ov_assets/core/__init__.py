"""Pure rules of the data contract: fields, canonical values, hashes, file names, record evaluation. No I/O."""
