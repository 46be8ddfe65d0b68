// DuckDB's run of the seed's hourly aggregation, the way a DuckDB user would write it: one
// read_json (columns given, so nothing is sampled) into a GROUP BY, written by COPY in the
// JSON sink's record format. Timed from instance creation to the written output, inside node
// (node's own start-up is not DuckDB's work); prints {"seconds": S} on stdout.
//
//   node bench/peers/duckdb_hourly.mjs EVENTS.jsonl OUT.jsonl [THREADS]
import { DuckDBInstance } from '@duckdb/node-api';

const [events, out, threads = '2'] = process.argv.slice(2);
const quote = (s) => `'${s.replaceAll("'", "''")}'`;
const start = performance.now();
const instance = await DuckDBInstance.create(':memory:', {
  threads,
  preserve_insertion_order: 'false',  // the output's order does not matter: faster COPY
});
const connection = await instance.connect();
await connection.run(`
  COPY (
    SELECT url || '|' || customer || '|' || strftime(hour, '%Y-%m-%dT%H:%M:%S') AS _id,
           customer, url, '1hour' AS freq, strftime(hour, '%Y-%m-%dT%H:%M:%S') AS ts,
           {'page_views': count(*), 'visitors': count(DISTINCT session_id)} AS metrics,
           histogram(referrer) AS referrers
    FROM (SELECT customer, url, session_id, referrer, date_trunc('hour', ts) AS hour
          FROM read_json(${quote(events)}, format = 'newline_delimited',
                         columns = {customer: 'VARCHAR', url: 'VARCHAR', referrer: 'VARCHAR',
                                    session_id: 'VARCHAR', ts: 'TIMESTAMP'}))
    GROUP BY customer, url, hour
  ) TO ${quote(out)} (FORMAT json)`);
connection.closeSync();
instance.closeSync();
console.log(JSON.stringify({ seconds: (performance.now() - start) / 1000 }));
