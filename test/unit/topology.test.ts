import { expect } from 'chai';
import { Topology, validateTopologyCommand, type TopologyCommand } from '../../lib/core/topology.ts';
import HashRing from 'hashring';
import { buildPartitionTable, PARTITION_TABLE_CACHE, replicasOf } from '../../lib/core/partitioner.ts';

const create: TopologyCommand = { op: 'create', clusterId: 'c1', partitions: 64, n: 3, vnodes: 32, id: 'a', addr: '127.0.0.1:1' };

describe('topology state machine', () => {
  it('bumps the epoch once per applied change and ignores ones that do not apply', () => {
    const t = new Topology();
    expect(t.apply({ op: 'add', id: 'b', addr: 'h:2' }), 'nothing before create').to.equal(false);
    expect(t.apply(create)).to.equal(true);
    expect(t.apply(create)).to.equal(false);
    expect(t.apply({ op: 'add', id: 'b', addr: 'h:2' })).to.equal(true);
    expect(t.apply({ op: 'add', id: 'b', addr: 'h:2' })).to.equal(false);
    expect(t.apply({ op: 'normal', id: 'b' })).to.equal(true);
    expect(t.apply({ op: 'normal', id: 'b' })).to.equal(false);
    expect(t.epoch).to.equal(3);
    expect(t.member('b')?.state).to.equal('normal');
  });

  it('computes the same table on every node for the same committed log', () => {
    const log: TopologyCommand[] = [create, { op: 'add', id: 'b', addr: 'h:2' }, { op: 'normal', id: 'b' }, { op: 'add', id: 'c', addr: 'h:3' }, { op: 'normal', id: 'c' }];
    const x = new Topology();
    const y = new Topology();
    for (const c of log) { x.apply(c); y.apply(c); }
    expect(x.table().checksum).to.equal(y.table().checksum);
    expect(Topology.fromSnapshot(x.snapshot()).table().checksum).to.equal(x.table().checksum);
    for (let p = 0; p < 64; p++) expect(replicasOf(x.table(), p)).to.have.length(3);
  });

  it('builds a partition table once for a member set, whatever the order, and the same table again after eviction', () => {
    const spec = { members: ['n3', 'n1', 'n2'], partitions: 64, n: 3, vnodes: 32 };
    const first = buildPartitionTable(spec);
    expect(buildPartitionTable({ ...spec, members: ['n1', 'n2', 'n3'] }), 'same object from the cache').to.equal(first);
    expect(Object.isFrozen(first.preference) && Object.isFrozen(first.preference[0]), 'shared, so frozen').to.equal(true);
    expect(buildPartitionTable({ ...spec, n: 2 }).checksum, 'N is part of the key').to.not.equal(first.checksum);
    for (let i = 0; i < PARTITION_TABLE_CACHE; i++) buildPartitionTable({ ...spec, members: [...spec.members, `x${i}`] });
    const again = buildPartitionTable(spec);
    expect(again, 'evicted, so computed again').to.not.equal(first);
    expect(again).to.deep.equal(first);
  });

  it('places partitions exactly as hashring\'s own md5 does (tables of older versions stay the same)', () => {
    for (const members of [['a'], ['n1', 'n2', 'n3'], ['n1', 'n2', 'n3', 'n4'], ['node-7', 'node-10', 'x_y.z', 'Q']]) {
      const servers: Record<string, { vnodes: number }> = {};
      for (const m of [...members].sort()) servers[m] = { vnodes: 160 };
      const ring = new HashRing(servers, 'md5', { 'max cache size': 1 });
      const table = buildPartitionTable({ members, partitions: 256, n: 3, vnodes: 160 });
      for (let p = 0; p < 256; p++) expect(table.preference[p], `partition ${p} of ${members.join(',')}`).to.deep.equal(ring.range(`p${p}`, members.length, true));
      ring.end();
    }
  });

  it('keeps joining members out of the current ring and in the future ring', () => {
    const t = new Topology();
    t.apply(create);
    t.apply({ op: 'add', id: 'b', addr: 'h:2' });
    expect(t.table('current').preference.every((l) => !l.includes('b'))).to.equal(true);
    expect(t.table('future').preference.some((l) => l.includes('b'))).to.equal(true);
    t.apply({ op: 'normal', id: 'b' });
    expect(t.table('current').checksum).to.equal(t.table('future').checksum);
  });

  it('refuses to let the last normal member leave', () => {
    const t = new Topology();
    t.apply(create);
    expect(t.reject({ op: 'leave', id: 'a' })).to.match(/last normal member/);
  });

  it('validates commands from the wire', () => {
    expect(validateTopologyCommand({ op: 'add', id: 'n1', addr: '127.0.0.1:7001' })).to.deep.equal({ op: 'add', id: 'n1', addr: '127.0.0.1:7001' });
    for (const bad of [null, 1, {}, { op: 'add', id: 'bad id', addr: 'h:1' }, { op: 'add', id: 'x', addr: 'nope' }, { op: 'drop', id: 'x' },
      { ...create, partitions: 100 }, { ...create, n: 0 }]) {
      expect(() => validateTopologyCommand(bad), JSON.stringify(bad)).to.throw(/invalid topology command/);
    }
  });
});
