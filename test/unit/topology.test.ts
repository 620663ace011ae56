import { expect } from 'chai';
import { Topology, validateTopologyCommand, type TopologyCommand } from '../../lib/core/topology.ts';
import { replicasOf } from '../../lib/core/partitioner.ts';

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
