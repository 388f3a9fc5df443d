// Reads a .env file with node's `dotenv` as a host would (`config`, into an
// object instead of process.env) and prints what it read as JSON.
// Usage: node read_dotenv.js FILE [fast]
const dotenv = require('dotenv')
const processEnv = {}
const result = dotenv.config({ path: process.argv[2], processEnv, quiet: true, fast: process.argv[3] === 'fast' })
if (result.error) {
  console.error(String(result.error))
  process.exit(1)
}
process.stdout.write(JSON.stringify(processEnv))
